/**
 * Settings judged by their effect, through the real `pulumi preview` (real
 * engine, language host and plugins, a throwaway local backend): each
 * exit's open ports as tor computes them appear in preview, and configs of
 * the classes that used to pass (an exit policy without a catch-all, a
 * MetricsPort open to everyone in two halves, a big resolver written
 * IPv4-mapped, a gateway at the network address, a private relay address,
 * a descriptor over the authorities' limit) stop it, naming the field,
 * with no resource planned.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, THREE_RELAYS } from "../support/fleet";
import { TestProject } from "../support/pulumi";

describe("pulumi preview judges settings by their effect", { timeout: 600_000 }, () => {
  let project: TestProject;
  beforeAll(() => {
    project = new TestProject("effects");
    makeTestKeys(project.dir, THREE_RELAYS);
  });
  afterAll(() => project?.destroy());

  const planned = (stdout: string) => ((JSON.parse(stdout).steps ?? []) as { op: string; urn: string }[]).filter((s) => s.op === "create" && !s.urn.includes("pulumi:pulumi:Stack"));

  it("shows each exit's open ports, as tor computes them, one line per exit", async () => {
    const config = testStackConfig(THREE_RELAYS);
    (config.relays[2] as Record<string, unknown>).exit = { enabled: true, policy: ["accept *:80", "accept *:443", "reject *:*"] };
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("preview");
    const text = result.stdout + result.stderr;
    expect(result.status, text).toBe(0);
    expect(text).toMatch(/relay exit-1 \(relays\[0\]\) exits to IPv4 and IPv6 ports 20-23, 43, 53, 79-81, 88, .*, 64738 \(tor 0\.4\.\S+'s effective exit policy\)/);
    expect(text).toMatch(/relay exit-2 \(relays\[2\]\) exits to IPv4 and IPv6 ports 80, 443 \(tor /);
    expect(text).not.toMatch(/relay guard-1 \(relays\[1\]\) exits/);
    // The test fleet stands on documentation addresses: a warning each, not a refusal.
    expect(text).toMatch(/relay guard-1: relays\[1\]\.ipv4\.address 198\.51\.100\.11 is a documentation address/);
  });

  it("stops on the config's classes, naming every field, with no resource planned", async () => {
    const config = testStackConfig(THREE_RELAYS);
    (config.relays[0] as Record<string, unknown>).exit = { enabled: true, policy: ["accept *:443"] };
    (config.relays[0] as Record<string, unknown>).nameservers = ["::ffff:8.8.8.8"];
    (config.relays[1] as Record<string, unknown>).ipv4 = { address: "198.51.100.11/24", gateway: "198.51.100.0" };
    project.configure({ ...config, metrics: { allowFrom: ["0.0.0.0/1", "128.0.0.0/1"] } }, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("preview", "--json");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relays\[0\]\.exit\.policy: does not end with a catch-all for every address/);
    expect(text).toMatch(/relays\[0\]\.nameservers\[0\]: ::ffff:8\.8\.8\.8 \(8\.8\.8\.8, written IPv4-mapped\) is Google's public resolver/);
    expect(text).toMatch(/relays\[1\]\.ipv4\.gateway: 198\.51\.100\.0 is the network address of the relay's subnet 198\.51\.100\.0\/24/);
    expect(text).toMatch(/metrics\.allowFrom: together cover 4294967296 IPv4 addresses/);
    expect(planned(result.stdout)).toEqual([]);
  });

  it("stops on what the network would refuse, naming every field, with no resource planned", async () => {
    const config = testStackConfig(THREE_RELAYS);
    (config.relays[1] as Record<string, unknown>).ipv4 = { address: "10.0.0.5/24", gateway: "10.0.0.1" };
    (config.relays[2] as Record<string, unknown>).contactInfo = `email:abuse[]example.net ${"x".repeat(25_000)}`;
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("preview", "--json");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relays\[1\]\.ipv4\.address: 10\.0\.0\.5 is a private address \(10\.0\.0\.0\/8, RFC 1918\); tor with the default directory authorities never publishes a relay there/);
    expect(text).toMatch(/relays\[2\]\.contactInfo \(relay exit-2\): the relay's descriptor would be up to \d+ bytes, over the 20000 bytes tor's directory authorities accept/);
    expect(text).not.toMatch(/\n\s+at .*\.ts:\d+/);
    expect(planned(result.stdout)).toEqual([]);
  });
});
