// The core's import graph, checked (make lint): no cycle between core modules or between its
// folders, and nothing but `config` itself (and the edge) imports `config`: it assembles the
// core's values, so a type the core needs lives with the concern that owns it.
// rustc allows cycles between modules of one crate, and no lint forbids them; this is the check.
// Reads `crate::…` paths in each file's non-test code (up to `#[cfg(test)] mod tests`).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const SRC = new URL("../src/", import.meta.url).pathname;

function rustFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return rustFiles(path);
    return name.endsWith(".rs") ? [path] : [];
  });
}

/** `auth/jwks/native.rs` -> `auth::jwks::native`; `auth/mod.rs` -> `auth`. */
function moduleOf(file) {
  const parts = relative(SRC, file).replace(/\.rs$/, "").split("/");
  if (parts.at(-1) === "mod") parts.pop();
  return parts.join("::");
}

const files = rustFiles(SRC).filter((file) => {
  const module = moduleOf(file);
  return !module.startsWith("edge") && !module.startsWith("bin") && module !== "lib";
});
const modules = new Set(files.map(moduleOf));

/** The longest known module that a `crate::a::b::Item` path names. */
function target(path) {
  const parts = path.split("::");
  for (let n = parts.length; n > 0; n--) {
    const candidate = parts.slice(0, n).join("::");
    if (modules.has(candidate)) return candidate;
  }
  return null;
}

const edges = new Map(); // module -> Set of modules it imports
for (const file of files) {
  const from = moduleOf(file);
  const text = readFileSync(file, "utf8");
  const tests = text.search(/#\[cfg\(test\)\]\s*mod tests/);
  const code = tests === -1 ? text : text.slice(0, tests);
  const targets = new Set();
  for (const [, path] of code.matchAll(/crate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)/g)) {
    const to = target(path);
    if (to && to !== from && !from.startsWith(`${to}::`)) targets.add(to);
  }
  // `super::x` in a folder's file names a sibling.
  for (const [, name] of code.matchAll(/\bsuper::([a-z_][a-z0-9_]*)/g)) {
    const parent = from.split("::").slice(0, -1);
    const to = target([...parent, name].join("::"));
    if (to && to !== from) targets.add(to);
  }
  edges.set(from, targets);
}

const problems = [];
const folderOf = (module) => module.split("::")[0];

for (const [from, targets] of edges) {
  for (const to of targets) {
    if (folderOf(to) === "config" && folderOf(from) !== "config") {
      problems.push(`${from} imports ${to}: config assembles the core; move the type to its concern`);
    }
  }
}

/** Every cycle's members (Tarjan's strongly connected components of more than one node). */
function cycles(graph) {
  let index = 0;
  const order = new Map(), low = new Map(), stack = [], onStack = new Set(), found = [];
  const visit = (node) => {
    order.set(node, index); low.set(node, index); index++;
    stack.push(node); onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!order.has(next)) { visit(next); low.set(node, Math.min(low.get(node), low.get(next))); }
      else if (onStack.has(next)) low.set(node, Math.min(low.get(node), order.get(next)));
    }
    if (low.get(node) === order.get(node)) {
      const component = [];
      let member;
      do { member = stack.pop(); onStack.delete(member); component.push(member); } while (member !== node);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!order.has(node)) visit(node);
  return found;
}

for (const cycle of cycles(edges)) problems.push(`import cycle between modules: ${cycle.join(", ")}`);

const folders = new Map();
for (const [from, targets] of edges) {
  const set = folders.get(folderOf(from)) ?? new Set();
  for (const to of targets) if (folderOf(to) !== folderOf(from)) set.add(folderOf(to));
  folders.set(folderOf(from), set);
}
for (const cycle of cycles(folders)) problems.push(`import cycle between folders: ${cycle.join(", ")}`);

if (process.argv.includes("--print")) {
  for (const [folder, targets] of [...folders].sort()) console.log(`${folder} -> ${[...targets].sort().join(", ")}`);
}
if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exit(1);
}
console.log(`check-layers: ${modules.size} core modules, no import cycle, config imported by none`);
