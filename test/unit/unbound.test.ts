/**
 * The exit's resolver configuration, judged by unbound's own checker
 * (unbound-checkconf), with the trust anchor path as the image has it.
 */
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { TOR_RUNTIME } from "../../lib/plan/fleet";
import { renderUnboundConf } from "../../lib/render/unbound";
import { privateTmpDir } from "../support/tmp";

const dir = privateTmpDir("unbound");
const anchor = TOR_RUNTIME.debian.rootTrustAnchor;

function checkconf(text: string) {
  const file = join(dir, `unbound-${Math.random().toString(16).slice(2)}.conf`);
  // unbound-checkconf also checks that the configured user exists; this machine's unbound package made it.
  writeFileSync(file, text);
  return spawnSync("unbound-checkconf", [file], { encoding: "utf8" });
}

describe("renderUnboundConf", () => {
  it("is a configuration unbound accepts: forwarding, recursion, and the testnet's insecure zone", () => {
    expect(existsSync(anchor), `${anchor} (dns-root-data) is on this machine too`).toBe(true);
    for (const config of [
      { upstreams: ["198.51.100.53", "2001:db8::53"], rootTrustAnchor: anchor },
      { upstreams: [], rootTrustAnchor: anchor },
      { upstreams: [], rootTrustAnchor: anchor, testnet: { zone: "testnet", dns: "10.77.0.1" } },
    ]) {
      const result = checkconf(renderUnboundConf(config));
      expect(result.status, result.stdout + result.stderr).toBe(0);
    }
  });

  it("validates, minimises query names and listens on loopback only", () => {
    const text = renderUnboundConf({ upstreams: [], rootTrustAnchor: anchor });
    expect(text).toMatch(/^ {2}trust-anchor-file: "\/usr\/share\/dns\/root\.key"$/m);
    expect(text).toMatch(/^ {2}qname-minimisation: yes$/m);
    expect(text.match(/^ {2}interface: .*$/gm)).toEqual(["  interface: 127.0.0.1", "  interface: ::1"]);
    expect(text).not.toMatch(/forward-zone/);
  });

  it("forwards only what the config names", () => {
    const text = renderUnboundConf({ upstreams: ["198.51.100.53"], rootTrustAnchor: anchor, testnet: { zone: "testnet", dns: "10.77.0.1" } });
    expect(text.match(/forward-addr: .*/g)).toEqual(["forward-addr: 10.77.0.1", "forward-addr: 198.51.100.53"]);
    expect(text).toMatch(/domain-insecure: "testnet"/);
  });
});
