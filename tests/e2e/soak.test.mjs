// The short soak (tests/soak.mjs; `make soak` runs the long one): mixed users at once, then every
// stream slot and reservation must come back, and clean users must be charged exactly.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SHORT, runSoak } from "../soak.mjs";

test("under mixed load every stream ends, settles and frees its slot", { timeout: 120_000 }, async () => {
  const { problems, numbers } = await runSoak(SHORT, (line) => console.log(line));
  console.log(`# ${JSON.stringify(numbers)}`);
  assert.deepEqual(problems, []);
});
