/**
 * The pull request comment for a stack's preview: a line per relay saying
 * what the plan does to it and why, then the raw diff.
 *   npm run --silent preview:summary -- --stack STACK --json preview.json [--diff preview.txt]
 * preview.json is `pulumi preview --json`'s output, preview.txt `pulumi
 * preview --diff`'s. Prints the comment (Markdown) on stdout.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { planFleet } from "../lib/plan/fleet";
import { renderPreviewComment, summarizePreview, type PreviewJsonStep } from "../lib/ops/preview-summary";
import { readStackConfigFile } from "../lib/config/stack-file";

const USAGE = "usage: npm run --silent preview:summary -- --stack STACK --json preview.json [--diff preview.txt]";

function main(): number {
  const { values } = parseArgs({ options: { stack: { type: "string" }, json: { type: "string" }, diff: { type: "string" } } });
  if (!values.stack || !values.json) {
    console.error(USAGE);
    return 2;
  }
  let preview: { steps?: PreviewJsonStep[] };
  try {
    preview = JSON.parse(readFileSync(values.json, "utf8"));
  } catch (err) {
    console.error(`preview-summary: ${values.json} is not the JSON of \`pulumi preview --json\` (${(err as Error).message})`);
    return 1;
  }
  // The torrc each relay gets now, rendered by the program's own planning, as
  // the preview did: its new torrc is not in the preview's data while the
  // build's inputs wait on values known only at update.
  const config = readStackConfigFile(".", values.stack);
  const plan = planFleet(config, { projectDir: ".", now: new Date(), needCollectionKey: false, allowPreviewRecords: true });
  const torrcs = Object.fromEntries(plan.relays.map((relay) => [relay.config.name, relay.torrc]));
  const summaries = summarizePreview(preview.steps ?? [], torrcs);
  process.stdout.write(renderPreviewComment(values.stack, summaries, values.diff ? readFileSync(values.diff, "utf8") : ""));
  return 0;
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(`preview-summary: ${(err as Error).message}`);
  process.exitCode = 1;
}
