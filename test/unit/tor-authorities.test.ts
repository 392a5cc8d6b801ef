/**
 * The directory authorities the exits' limits exempt (lib/tor/tor-authorities.ts)
 * against the list compiled into this machine's tor: its DirAuthority
 * strings (src/app/config/auth_dirs.inc) read straight out of the binary.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PUBLIC_AUTHORITIES } from "../../lib/tor/tor-authorities";

/** "NICK orport=N [bridge] [v3ident=X] [ipv6=[A]:P] A.B.C.D:P FP…" strings in tor's binary. */
function authoritiesInTor(): { nickname: string; ipv4: string; ipv6?: string; bridge: boolean }[] {
  const binary = readFileSync(execFileSync("sh", ["-c", "command -v tor"], { encoding: "utf8" }).trim()).toString("latin1");
  const found = new Map<string, { nickname: string; ipv4: string; ipv6?: string; bridge: boolean }>();
  for (const match of binary.matchAll(/([A-Za-z0-9]{1,19}) orport=\d+ ((?:bridge |v3ident=[0-9A-F]{40} |no-v2 )*)(?:ipv6=\[([0-9a-f:]+)\]:\d+ )?(\d+\.\d+\.\d+\.\d+):\d+ [0-9A-F ]{40,50}/g)) {
    found.set(match[1]!, { nickname: match[1]!, ipv4: match[4]!, ...(match[3] ? { ipv6: match[3] } : {}), bridge: match[2]!.includes("bridge") });
  }
  return [...found.values()];
}

describe("the public directory authorities", () => {
  it("are exactly the v3 authorities this machine's tor has compiled in, with their addresses", () => {
    const inTor = authoritiesInTor();
    // The bridge authority is in tor's list too; it never connects to a public relay.
    expect(inTor.filter((authority) => authority.bridge).length).toBeGreaterThanOrEqual(1);
    const v3 = inTor.filter((authority) => !authority.bridge).map(({ bridge: _bridge, ...authority }) => authority);
    expect(v3.length).toBeGreaterThanOrEqual(9);
    const byName = (list: readonly { nickname: string }[]) => [...list].sort((a, b) => a.nickname.localeCompare(b.nickname));
    expect(byName(PUBLIC_AUTHORITIES)).toEqual(byName(v3));
  });
});
