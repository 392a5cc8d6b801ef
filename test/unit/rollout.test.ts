import { describe, expect, it } from "vitest";
import { rollingOrder } from "../../lib/deploy/rollout";
import { isosToPrune } from "../../lib/proxmox/proxmox-api";

const relay = (name: string, node: string, vmId: number) => ({ config: { name, node, vmId } });

describe("rollingOrder", () => {
  const fleet = [relay("c", "pve1", 103), relay("a", "pve1", 101), relay("x", "pve2", 201), relay("b", "pve1", 102), relay("y", "pve2", 202)];

  it("replaces relays on one node one at a time, by vmId", () => {
    const order = rollingOrder(fleet, 1).map(({ planned, after }) => [planned.config.name, after]);
    expect(order).toEqual([
      ["a", []],
      ["b", ["a"]],
      ["c", ["b"]],
      ["x", []],
      ["y", ["x"]],
    ]);
  });

  it("runs maxParallel at a time, each wave after the one before", () => {
    const order = Object.fromEntries(rollingOrder(fleet, 2).map(({ planned, after }) => [planned.config.name, after]));
    expect(order).toEqual({ a: [], b: [], c: ["a"], x: [], y: [] });
  });

  it("is the same whatever order the config lists the relays in", () => {
    expect(rollingOrder([...fleet].reverse(), 1)).toEqual(rollingOrder(fleet, 1));
  });
});

describe("isosToPrune", () => {
  const volumes = [
    { volid: "local:iso/relay-A-000000000001.iso", ctime: 100 },
    { volid: "local:iso/relay-A-000000000003.iso", ctime: 300 },
    { volid: "local:iso/relay-A-000000000002.iso", ctime: 200 },
    { volid: "local:iso/relay-A-000000000004.iso", ctime: 400 },
  ];
  it("keeps the current image and the newest keep-1 others", () => {
    expect(isosToPrune(volumes, "local:iso/relay-A-000000000004.iso", 2).map((v) => v.volid)).toEqual([
      "local:iso/relay-A-000000000002.iso",
      "local:iso/relay-A-000000000001.iso",
    ]);
  });
  it("never prunes the current image, even when it is not the newest (a rollback)", () => {
    const pruned = isosToPrune(volumes, "local:iso/relay-A-000000000001.iso", 1).map((v) => v.volid);
    expect(pruned).not.toContain("local:iso/relay-A-000000000001.iso");
    expect(pruned).toHaveLength(3);
  });
});
