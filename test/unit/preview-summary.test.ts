/**
 * The per-relay summary of a preview (lib/ops/preview-summary.ts), on steps shaped
 * as `pulumi preview --json` prints them: URNs with parent types, the build
 * step's triggers (the named image inputs), and a spec that is unknown while
 * it waits on values known only at update. test/engine/preview-workflow.test.ts
 * checks the summary of a real preview.
 */
import { describe, expect, it } from "vitest";
import { changedTorrcOptions, PREVIEW_COMMENT_MARKER, renderPreviewComment, summarizePreview, type PreviewJsonStep } from "../../lib/ops/preview-summary";

const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
const urn = (parents: string, name: string) => `urn:pulumi:fremont::diskless-relays::${parents}::${name}`;
const relayStep = (relay: string, op = "same"): PreviewJsonStep => ({ op, urn: urn("diskless-relays:relay:Relay", relay) });
const buildUrn = (relay: string) => urn("diskless-relays:relay:Relay$diskless-relays:image:RelayImage$command:local:Command", `${relay}-image-build`);
const vmUrn = (relay: string) => urn("diskless-relays:relay:Relay$diskless-relays:relay:ProxmoxRelayVm$proxmoxve:index/vmLegacy:VmLegacy", `${relay}-vm`);
const spec = (torrc: string) => ({ environment: { DISKLESS_RELAYS_STEP: JSON.stringify({ relay: "r", torrc }) } });

const OLD_TORRC = "Nickname DisklessFmtExit1\nContactInfo email:abuse[]example.net\nORPort 443\nExitPolicy accept *:443\n";
const NEW_TORRC = "Nickname DisklessFmtExit1\nContactInfo email:noc[]example.net\nORPort 443\nExitPolicy accept *:443\n";

describe("summarizePreview", () => {
  it("names the torrc options that changed, from the old spec and the torrc this config renders", () => {
    const steps: PreviewJsonStep[] = [
      relayStep("fmt-exit-1"),
      {
        op: "replace",
        urn: buildUrn("fmt-exit-1"),
        oldState: { inputs: spec(OLD_TORRC) },
        newState: { inputs: { environment: { DISKLESS_RELAYS_STEP: UNKNOWN } } },
        detailedDiff: { "triggers[0].torrc": { kind: "update-replace" } },
        replaceReasons: ["triggers"],
      },
      relayStep("fmt-guard-1"),
      { op: "same", urn: buildUrn("fmt-guard-1") },
    ];
    const summaries = summarizePreview(steps, { "fmt-exit-1": NEW_TORRC });
    expect(summaries.map((s) => s.line)).toEqual(["fmt-exit-1: rebuild — torrc changed: ContactInfo", "fmt-guard-1: unchanged"]);
  });

  it("lists every changed image input, and says torrc changed without options when no torrc is known", () => {
    const steps: PreviewJsonStep[] = [
      relayStep("fmt-exit-2"),
      {
        op: "replace",
        urn: buildUrn("fmt-exit-2"),
        detailedDiff: { "triggers[0].torrc": { kind: "update-replace" }, "triggers[0].identityKeys": { kind: "update-replace" }, "triggers[0].base": { kind: "update-replace" } },
      },
    ];
    expect(summarizePreview(steps)[0]!.line).toBe("fmt-exit-2: rebuild — torrc changed; base image changed; identity keys changed (a renewed signing certificate?)");
  });

  it("names the packages a rebuilt base changes, for every relay it rebuilds", () => {
    const baseBuild: PreviewJsonStep = {
      op: "replace",
      urn: urn("diskless-relays:image:BaseImage$command:local:Command", "debian-build"),
      oldState: { inputs: { triggers: [{ packages: ["libc6 2.36-9 amd64", "tor 0.4.9.11-1 amd64"] }] } },
      newState: { inputs: { triggers: [{ packages: ["libc6 2.36-9 amd64", "tor 0.4.9.12-1 amd64"] }] } },
      detailedDiff: { "triggers[0].packages[1]": { kind: "update-replace" } },
    };
    const rebuilt = (relay: string): PreviewJsonStep => ({ op: "replace", urn: buildUrn(relay), detailedDiff: { "triggers[0].base": { kind: "update-replace" } } });
    const steps = [baseBuild, relayStep("fmt-exit-1"), rebuilt("fmt-exit-1"), relayStep("fmt-guard-1"), rebuilt("fmt-guard-1")];
    expect(summarizePreview(steps).map((s) => s.line)).toEqual(["fmt-exit-1: rebuild — base: tor 0.4.9.11-1 → 0.4.9.12-1", "fmt-guard-1: rebuild — base: tor 0.4.9.11-1 → 0.4.9.12-1"]);
  });

  it("tells a VM change without a rebuild, a new relay and a removed one", () => {
    const steps: PreviewJsonStep[] = [
      relayStep("fmt-guard-1"),
      { op: "same", urn: buildUrn("fmt-guard-1") },
      { op: "update", urn: vmUrn("fmt-guard-1"), detailedDiff: { "memory.dedicated": { kind: "update" }, cpu: { kind: "update" } } },
      relayStep("fmt-guard-3", "create"),
      { op: "create", urn: buildUrn("fmt-guard-3") },
      relayStep("fmt-guard-9", "delete"),
    ];
    expect(summarizePreview(steps).map((s) => s.line)).toEqual(["fmt-guard-1: update — vm: memory, cpu", "fmt-guard-3: new", "fmt-guard-9: removed"]);
  });

  it("keeps the resources of fmt-exit-10 apart from those of fmt-exit-1", () => {
    const steps: PreviewJsonStep[] = [
      relayStep("fmt-exit-1"),
      relayStep("fmt-exit-10"),
      { op: "same", urn: buildUrn("fmt-exit-1") },
      { op: "replace", urn: buildUrn("fmt-exit-10"), detailedDiff: { "triggers[0].network": { kind: "update-replace" } } },
    ];
    expect(summarizePreview(steps).map((s) => s.line)).toEqual(["fmt-exit-1: unchanged", "fmt-exit-10: rebuild — network settings changed"]);
  });
});

describe("changedTorrcOptions", () => {
  it("names added, removed and changed options once each", () => {
    expect(changedTorrcOptions("A 1\nB 2\nC 3\n", "A 1\nB 5\nD 4\n")).toEqual(["B", "D", "C"]);
    expect(changedTorrcOptions("ExitPolicy accept *:80\nExitPolicy reject *:*\n", "ExitPolicy accept *:443\nExitPolicy reject *:*\n")).toEqual(["ExitPolicy"]);
  });
});

describe("renderPreviewComment", () => {
  it("starts with the marker, puts the summary before the raw diff, and fits GitHub's comment limit", () => {
    const body = renderPreviewComment("fremont", summarizePreview([relayStep("fmt-exit-1", "create")]), "+ a\n```\n".repeat(20_000));
    expect(body.startsWith(`${PREVIEW_COMMENT_MARKER}\n`)).toBe(true);
    expect(body.indexOf("- fmt-exit-1: new")).toBeLessThan(body.indexOf("```diff"));
    expect(body.length).toBeLessThanOrEqual(65_536);
    // A fence inside the diff would close the code block early.
    expect(body.split("```").length).toBe(3);
    expect(body).toMatch(/… \(cut: the whole diff is in the workflow run's log\)\n```\n\n<\/details>\n$/);
  });
});
