/**
 * A reviewer's summary of `pulumi preview --json`: one line per relay saying
 * what the plan does to it and why, e.g.
 * "fmt-exit-1: rebuild — torrc changed: ContactInfo". The reasons are the
 * named image inputs (lib/plan/image-inputs.ts) whose digests changed in the
 * build step's triggers, so the summary says what the engine decided on.
 * Pure: it reads the preview's data and the torrcs handed to it.
 */
import { describeChanges, packageChanges } from "../image/package-index";
import { STEP_SPEC_ENV } from "../steps/steps";

/** A step of `pulumi preview --json`, as far as the summary reads it. */
export interface PreviewJsonStep {
  op: string;
  urn: string;
  oldState?: { type?: string; inputs?: Record<string, unknown> };
  newState?: { type?: string; inputs?: Record<string, unknown> };
  detailedDiff?: Record<string, { kind: string }>;
  diffReasons?: string[];
  replaceReasons?: string[];
}

/** What each named image input means to a reviewer (lib/plan/image-inputs.ts relayImageInputs). */
const IMAGE_INPUT_REASONS: Record<string, string> = {
  torrc: "torrc changed",
  network: "network settings changed",
  kernelCmdline: "kernel command line changed",
  resolver: "resolver (unbound) config changed",
  base: "base image changed",
  scripts: "image build scripts changed",
  secureBoot: "Secure Boot key changed",
  collectionKey: "collection key changed",
  identityKeys: "identity keys changed (a renewed signing certificate?)",
  sshHostKey: "SSH host key changed",
  familyKey: "family key changed",
  agent: "relay agent changed",
  broker: "key broker settings changed",
};

const REPLACING = new Set(["replace", "create-replacement", "delete-replaced"]);
const PLAIN_OP: Record<string, string> = { create: "new", delete: "removed", same: "unchanged", update: "update", read: "unchanged", refresh: "unchanged" };

const nameOf = (urn: string) => urn.split("::").at(-1)!;
const typeOf = (urn: string) => urn.split("::").at(-2)!.split("$").at(-1)!;

/** The torrc a build step's spec carries, when the preview knows it (an unknown value is a placeholder, not JSON). */
function torrcOfBuildStep(inputs: Record<string, unknown> | undefined): string | undefined {
  const spec = (inputs?.environment as Record<string, unknown> | undefined)?.[STEP_SPEC_ENV];
  if (typeof spec !== "string") return undefined;
  try {
    const torrc = (JSON.parse(spec) as { torrc?: unknown }).torrc;
    return typeof torrc === "string" ? torrc : undefined;
  } catch {
    return undefined;
  }
}

/** The torrc options (first word of a line) that a line was added to, removed from or changed in, in order of appearance. */
export function changedTorrcOptions(before: string, after: string): string[] {
  const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#"));
  const old = new Set(lines(before));
  const now = new Set(lines(after));
  const changed = [...lines(after).filter((line) => !old.has(line)), ...lines(before).filter((line) => !now.has(line))];
  return [...new Set(changed.map((line) => line.split(/\s+/)[0]!))];
}

/** The packages a base build step's triggers name (lib/plan/image-inputs.ts BaseImageInputs.packages), when the preview knows them. */
function basePackagesOf(inputs: Record<string, unknown> | undefined): string[] | undefined {
  const triggers = inputs?.triggers;
  const packages = Array.isArray(triggers) ? (triggers[0] as { packages?: unknown } | undefined)?.packages : undefined;
  return Array.isArray(packages) && packages.every((p) => typeof p === "string") ? (packages as string[]) : undefined;
}

/**
 * What a rebuilt base changes in its package set ("tor 0.4.9.11-1 →
 * 0.4.9.12-1, …"), from the base build step's old and new triggers; undefined
 * when the base is not rebuilt or its packages did not change.
 */
function basePackageChanges(steps: PreviewJsonStep[]): string | undefined {
  const build = steps.find((step) => step.urn.includes("diskless-relays:image:BaseImage$") && REPLACING.has(step.op) && basePackagesOf(step.oldState?.inputs) && basePackagesOf(step.newState?.inputs));
  if (!build) return undefined;
  const changes = packageChanges(basePackagesOf(build.oldState?.inputs)!, basePackagesOf(build.newState?.inputs)!);
  return changes.length > 0 ? describeChanges(changes, 12) : undefined;
}

export interface RelaySummary {
  relay: string;
  /** new, rebuild, update, unchanged, removed */
  action: string;
  reasons: string[];
  line: string;
}

/**
 * One summary per relay of the plan (its diskless-relays:relay:Relay
 * component), in the plan's order. `currentTorrcs` (relay → torrc this
 * config renders) names the torrc options that changed when the preview does
 * not know the new torrc itself (it depends on values known only at update).
 */
export function summarizePreview(steps: PreviewJsonStep[], currentTorrcs: Record<string, string> = {}): RelaySummary[] {
  const relays = steps.filter((step) => typeOf(step.urn) === "diskless-relays:relay:Relay");
  // A preview of a stack with state leaves unchanged components out of its steps: the config's relays count too.
  const componentOps = new Map(relays.map((step) => [nameOf(step.urn), step.op]));
  const relayNames = [...new Set([...componentOps.keys(), ...Object.keys(currentTorrcs)])];
  const names = [...relayNames].sort((a, b) => b.length - a.length);
  // A relay's resources are named RELAY-…; the longest relay name that prefixes one owns it (fmt-exit-10 is not fmt-exit-1).
  const ownerOf = (step: PreviewJsonStep) => (step.urn.includes("diskless-relays:relay:Relay$") ? names.find((name) => nameOf(step.urn).startsWith(`${name}-`)) : undefined);
  const summaries: RelaySummary[] = [];
  const packages = basePackageChanges(steps);
  for (const relay of relayNames) {
    const componentOp = componentOps.get(relay) ?? "same";
    const own = steps.filter((step) => ownerOf(step) === relay);
    const build = own.filter((step) => nameOf(step.urn) === `${relay}-image-build`);
    const reasons: string[] = [];
    let action = PLAIN_OP[componentOp] ?? componentOp;
    if (componentOp === "create" || componentOp === "delete") {
      // A relay that is new or removed needs no further reason.
    } else if (build.some((step) => REPLACING.has(step.op))) {
      action = "rebuild";
      const keys = new Set(build.flatMap((step) => [...Object.keys(step.detailedDiff ?? {}), ...(step.replaceReasons ?? [])]));
      for (const [input, reason] of Object.entries(IMAGE_INPUT_REASONS)) {
        if (![...keys].some((key) => key === `triggers[0].${input}` || key.startsWith(`triggers[0].${input}.`))) continue;
        if (input === "torrc") {
          const before = build.map((step) => torrcOfBuildStep(step.oldState?.inputs)).find((t) => t !== undefined);
          const after = build.map((step) => torrcOfBuildStep(step.newState?.inputs)).find((t) => t !== undefined) ?? currentTorrcs[relay];
          const options = before !== undefined && after !== undefined ? changedTorrcOptions(before, after) : [];
          reasons.push(options.length > 0 ? `${reason}: ${options.join(", ")}` : reason);
        } else if (input === "base" && packages) reasons.push(`base: ${packages}`);
        else reasons.push(reason);
      }
      if ([...keys].some((key) => key === "triggers[1]" || key.startsWith("triggers[1]."))) reasons.push("newly collected onion keys and state");
      if (reasons.length === 0) reasons.push("image inputs changed");
    } else {
      const changing = own.filter((step) => step.op !== "same" && step.op !== "read");
      if (changing.length > 0) {
        action = changing.some((step) => REPLACING.has(step.op)) ? "replace" : "update";
        for (const step of changing) {
          const fields = Object.keys(step.detailedDiff ?? {}).map((key) => key.split(/[.[]/)[0]!);
          const what = nameOf(step.urn).slice(relay.length + 1);
          reasons.push(fields.length > 0 ? `${what}: ${[...new Set(fields)].join(", ")}` : what);
        }
      } else action = "unchanged";
    }
    summaries.push({ relay, action, reasons, line: `${relay}: ${action}${reasons.length > 0 ? ` — ${reasons.join("; ")}` : ""}` });
  }
  return summaries;
}

/** Marks the pull request comment that the workflow updates in place. */
export const PREVIEW_COMMENT_MARKER = "<!-- diskless-relays preview -->";

/** GitHub refuses comments over 65,536 characters; the raw diff is cut to fit. */
const COMMENT_LIMIT = 65_000;

/** The pull request comment: the per-relay summary first, then the raw diff. */
export function renderPreviewComment(stack: string, summaries: RelaySummary[], rawDiff: string): string {
  const head = [
    PREVIEW_COMMENT_MARKER,
    `### \`pulumi preview\` of the ${stack} stack`,
    "",
    ...(summaries.length > 0 ? summaries.map((s) => `- ${s.line}`) : ["- no relay in the plan"]),
    "",
    "<details><summary>Raw diff</summary>",
    "",
    "```diff",
  ].join("\n");
  const tail = "\n```\n\n</details>\n";
  // A fence inside the diff would end the block early.
  // The CLI's progress lines ("@ previewing update....") say nothing once it is done.
  let diff = rawDiff
    .split("\n")
    .filter((line) => !line.startsWith("@ "))
    .join("\n")
    .replace(/```/g, "ʼʼʼ")
    .trimEnd();
  const room = COMMENT_LIMIT - head.length - tail.length - 100;
  if (diff.length > room) diff = `${diff.slice(0, room)}\n… (cut: the whole diff is in the workflow run's log)`;
  return `${head}\n${diff}${tail}`;
}
