/**
 * The steps' output contracts (lib/steps/steps.ts STEP_OUTPUTS): what a step
 * prints last for the component that runs it, written by encodeStepOutput on
 * the step's side and read by parseStepOutput on the component's. Every
 * step has a contract or says it prints for people only.
 */
import { describe, expect, it } from "vitest";
import { encodeStepOutput, parseStepOutput, STEP_OUTPUTS, STEP_SPECS } from "../../lib/steps/steps";

const BUILT = {
  relay: "exit-1",
  imageDigest: "a".repeat(64),
  isoName: "relay-ExitOne-aaaaaaaaaaaa-0123abcd.iso",
  iso: "build/relay.iso",
  uki: "build/relay.efi",
  files: "build/files.json",
  isoSha256: "b".repeat(64),
  ukiSha256: "c".repeat(64),
  isoBytes: 123,
  ukiBytes: 45,
  onionKeys: ["secret_onion_key_ntor"],
};

describe("step output contracts", () => {
  it("covers every step in the step table, and only those", () => {
    expect(Object.keys(STEP_OUTPUTS).sort()).toEqual(Object.keys(STEP_SPECS).sort());
  });

  it("reads a build's record from the last line, after the step's log", () => {
    const stdout = `building relay exit-1\nukify: wrote build/relay.efi\n${encodeStepOutput("build-relay-image", BUILT)}\n`;
    expect(parseStepOutput("build-relay-image", stdout)).toEqual(BUILT);
  });

  it("refuses to write an output that breaks the contract, naming the field", () => {
    expect(() => encodeStepOutput("build-relay-image", { ...BUILT, isoSha256: "not a digest" })).toThrow(/step build-relay-image: invalid output: isoSha256/);
    expect(() => encodeStepOutput("measure-launch", "0".repeat(95))).toThrow(/step measure-launch: invalid output/);
  });

  it("refuses to read an output that is not the contract's: not JSON, a field missing or unknown, a log line last", () => {
    expect(() => parseStepOutput("build-relay-image", "built it\n")).toThrow(/last line is not JSON: "built it"/);
    const { isoName: _, ...missing } = BUILT;
    expect(() => parseStepOutput("build-relay-image", JSON.stringify(missing))).toThrow(/breaks the step's contract: isoName: Required/);
    expect(() => parseStepOutput("build-relay-image", JSON.stringify({ ...BUILT, privateKey: "x" }))).toThrow(/Unrecognized key/);
    expect(() => parseStepOutput("measure-launch", `${"f".repeat(96)}\nmeasured\n`)).toThrow(/measure-launch: its output breaks/);
  });

  it("reads a measurement and a local VM's pid as the lines the steps print", () => {
    expect(parseStepOutput("measure-launch", `${"0a".repeat(48)}\n`)).toBe("0a".repeat(48));
    expect(parseStepOutput("start-local-vm", "qemu: starting\nstarted pid 4242, console /run/relay/console.log\n")).toBe(4242);
    expect(() => parseStepOutput("start-local-vm", "started pid 0, console x\n")).toThrow(/start-local-vm/);
  });
});
