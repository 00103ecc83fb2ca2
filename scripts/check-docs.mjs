// Keeps the docs true to the code, so `make lint` fails instead of a reader:
// 1. every variable the code reads is in docs/configuration.md's table (a new `vars.number("X", …)`
//    with no row is an undocumented knob);
// 2. every secret the code reads is in .dev.vars.example (or `make dev` users never learn of it);
// 3. every relative link of README.md and docs/*.md leads to a file that exists and, for
//    `file.md#anchor`, to a heading that exists (GitHub's slugs), so moving a section breaks lint,
//    not the reader's click.
import { readFileSync, readdirSync, existsSync } from "node:fs";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const read = (file) => readFileSync(path.join(root, file), "utf8");
const problems = [];

// Every config read names its variable first: `vars.number("MAX_N", …)`, `vars\n .service_url("X")`.
// The edge reads a few outside `Vars` with `env_string(env, "X")`.
const READ = /\bvars\s*\.\s*([a-z_]+)\s*\(\s*"([A-Z][A-Z0-9_]+)"/g;
const ENV_READ = /\benv_string\s*\(\s*\w+\s*,\s*"([A-Z][A-Z0-9_]+)"/g;
// `Vars` registers what these read for scrubbing: they are the secrets.
const SECRET_READS = new Set(["secret", "trimmed_secret"]);

const variables = new Set();
const secrets = new Set();
const rustFiles = readdirSync(path.join(root, "src"), { recursive: true }).filter((f) => f.endsWith(".rs"));
for (const file of rustFiles) {
  const code = read(path.join("src", file));
  for (const [, method, name] of code.matchAll(READ)) {
    variables.add(name);
    if (SECRET_READS.has(method)) secrets.add(name);
  }
  for (const [, name] of code.matchAll(ENV_READ)) variables.add(name);
}
if (variables.size === 0) problems.push("src/: found no variable reads; has the `vars.<method>(\"NAME\"` form changed?");

const configRows = read("docs/configuration.md")
  .split("\n")
  .filter((line) => line.startsWith("|"))
  .join("\n");
for (const name of [...variables].sort()) {
  if (!configRows.includes("`" + name + "`")) problems.push(`docs/configuration.md: no table row names \`${name}\``);
}
const devVars = read(".dev.vars.example");
for (const name of [...secrets].sort()) {
  if (!new RegExp(`^#?\\s*${name}=`, "m").test(devVars)) problems.push(`.dev.vars.example: no \`${name}=\` line`);
}

// GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens, repeats numbered.
function anchors(markdown) {
  const seen = new Map();
  const slugs = new Set();
  for (const line of withoutCode(markdown)) {
    const heading = line.match(/^#{1,6}\s+(.*?)\s*#*\s*$/);
    if (!heading) continue;
    const text = heading[1].replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    const slug = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    slugs.add(count ? `${slug}-${count}` : slug);
  }
  return slugs;
}

// Lines outside fenced blocks, with inline code blanked (a `](x)` in code is not a link).
function withoutCode(markdown) {
  let fenced = false;
  return markdown.split("\n").flatMap((line) => {
    if (/^\s*```/.test(line)) fenced = !fenced;
    if (fenced || /^\s*```/.test(line)) return [];
    return [line.replace(/`[^`]*`/g, (code) => (/^#/.test(line) ? code : "``"))];
  });
}

const pages = ["README.md", ...readdirSync(path.join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];
for (const page of pages) {
  const lines = withoutCode(read(page));
  for (const line of lines) {
    for (const [, target] of line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
      const [file, anchor] = target.split("#");
      const resolved = file ? path.join(path.dirname(page), decodeURIComponent(file)) : page;
      if (!existsSync(path.join(root, resolved))) {
        problems.push(`${page}: link to ${target}: ${resolved} does not exist`);
      } else if (anchor !== undefined && resolved.endsWith(".md") && !anchors(read(resolved)).has(anchor)) {
        problems.push(`${page}: link to ${target}: ${resolved} has no heading #${anchor}`);
      }
    }
  }
}

if (problems.length) {
  console.error(`check-docs: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`check-docs: ${variables.size} variables (${secrets.size} secrets) documented; links of ${pages.length} pages resolve`);
