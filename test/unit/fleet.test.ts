import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../../lib/config/config";
import { FleetError, planFleet } from "../../lib/plan/fleet";
import { initFamilyKey, initRelayKeys, relayDir, renewSigningKey } from "../../lib/tor/key-store";
import { privateTmpDir } from "../support/tmp";
import { fixturePath } from "../support/snp-fixtures";

const projectDir = privateTmpDir("fleet");
const store = join(projectDir, "keys");

function config(relays: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  return parseStackConfig({
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "a@pve!b=c",
    stateCollection: { privateKeyFile: "collector" },
    relays: relays.map((relay, i) => ({
      node: "pve1",
      vmId: 9100 + i,
      mac: `BC:24:11:00:00:0${i}`,
      ipv4: { address: `198.51.100.${10 + i}/24`, gateway: "198.51.100.1" },
      contactInfo: "abuse@example.net",
      nameservers: ["198.51.100.53"],
      ...relay,
    })),
    ...extra,
  });
}

describe("planFleet", () => {
  let familyId: string;
  beforeAll(() => {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(projectDir, "collector")]);
    initRelayKeys(store, "exit-a", { nickname: "ExitA" });
    initRelayKeys(store, "exit-b", { nickname: "ExitB" });
    initRelayKeys(store, "guard-c", { nickname: "GuardC" });
    familyId = initFamilyKey(store, "fleet");
  });
  const now = new Date();

  it("renders each torrc with MyFamily from the other members' fingerprints and the family's FamilyId", () => {
    const { relays } = planFleet(
      config([
        { name: "exit-a", nickname: "ExitA", family: "fleet", exit: { enabled: true } },
        { name: "exit-b", nickname: "ExitB", family: "fleet", exit: { enabled: true } },
        { name: "guard-c", nickname: "GuardC" },
      ]),
      { projectDir, now },
    );
    const [a, b, c] = relays;
    expect(a!.torrc).toContain(`MyFamily $${b!.identity.rsaFingerprint}\n`);
    expect(b!.torrc).toContain(`MyFamily $${a!.identity.rsaFingerprint}\n`);
    expect(a!.torrc).toContain(`FamilyId ${familyId}\n`);
    expect(a!.familyKeyFile).toBe(join(store, "families", "fleet.secret_family_key"));
    expect(c!.torrc).not.toMatch(/MyFamily|FamilyId/);
    expect(c!.familyKeyFile).toBeUndefined();
  });

  it("fills each exit's notice with its contact and addresses, or takes the operator's own file; a guard has none; every exit has its limits", () => {
    writeFileSync(join(projectDir, "notice.html"), "<p>Abuse: FIXME_YOUR_EMAIL_ADDRESS at FIXME_DNS_NAME</p>\n");
    const { relays } = planFleet(
      config([
        { name: "exit-a", nickname: "ExitA", exit: { enabled: true }, contactInfo: "Ops <abuse@example.net>", ipv6: { address: "2001:db8::10/64", gateway: "2001:db8::1" } },
        { name: "exit-b", nickname: "ExitB", exit: { enabled: true, notice: { file: "notice.html" } } },
        { name: "guard-c", nickname: "GuardC" },
      ]),
      { projectDir, now },
    );
    const [a, b, c] = relays;
    expect(a!.exitNotice).toContain('<a href="mailto:abuse@example.net">maintainer</a> (Ops &lt;abuse@example.net&gt;)');
    expect(a!.exitNotice).toContain("198.51.100.10 or 2001:db8::10");
    expect(b!.exitNotice).toBe("<p>Abuse: abuse@example.net at 198.51.100.11</p>\n");
    expect(c!.exitNotice).toBeUndefined();
    expect(a!.hardening.ruleset).toContain("tcp dport 80 ");
    expect(c!.hardening.ruleset).not.toContain("tcp dport 80 ");
    expect(c!.hardening.ruleset).toContain("tcp dport 443 ");
  });

  it("refuses an operator's notice that is missing, a directory or not UTF-8, naming the field", () => {
    mkdirSync(join(projectDir, "notice-dir"), { recursive: true });
    writeFileSync(join(projectDir, "latin1.html"), Buffer.from([0x3c, 0x70, 0x3e, 0xe9, 0x3c, 0x2f, 0x70, 0x3e]));
    const plan = (file: string) => () => planFleet(config([{ name: "exit-a", nickname: "ExitA", exit: { enabled: true, notice: { file } } }]), { projectDir, now });
    expect(plan("absent.html")).toThrow(/relays\[0\]\.exit\.notice\.file: .*absent\.html is missing/);
    expect(plan("notice-dir")).toThrow(/relays\[0\]\.exit\.notice\.file: .*notice-dir is not a regular file/);
    expect(plan("latin1.html")).toThrow(/relays\[0\]\.exit\.notice\.file: .*latin1\.html is not UTF-8 text/);
  });

  it("stops an SEV-SNP relay whose OVMF file is not the one its config pins, and says how to pin it", () => {
    // The pin, as `sha256sum test/fixtures/snp/ovmf_AmdSev_suffix.bin` prints it.
    const pinned = "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c";
    const ovmf = join(projectDir, "ovmf.fd");
    copyFileSync(fixturePath("ovmf_AmdSev_suffix.bin"), ovmf);
    const snp = (ovmfSha256: string) =>
      config([{ name: "guard-c", nickname: "GuardC", cpuType: "EPYC-v4", sev: { enabled: true, ovmf: "ovmf.fd", ovmfSha256 } }], { proxmoxRootPassword: "pw" });
    expect(planFleet(snp(pinned), { projectDir, now }).relays).toHaveLength(1);
    const other = "0".repeat(64);
    expect(() => planFleet(snp(other), { projectDir, now })).toThrow(new RegExp(`relays\\[0\\]\\.sev\\.ovmfSha256: .*ovmf\\.fd has SHA-256 ${pinned}, not the pinned ${other}.*pulumi config set --path 'relays\\[0\\]\\.sev\\.ovmfSha256' ${pinned}`));
  });

  it("stops on an expired certificate, naming the relay, the file and the renew command", () => {
    const dir = join(projectDir, "expired");
    mkdirSync(dir, { mode: 0o700 });
    initRelayKeys(dir, "old", { nickname: "OldRelay" }, 2);
    const plan = () =>
      planFleet(config([{ name: "old", nickname: "OldRelay", keysDir: relayDir(dir, "old") }]), { projectDir, now: new Date(Date.now() + 4 * 86_400_000) });
    expect(plan).toThrow(FleetError);
    expect(plan).toThrow(/relay old: .*old\/ed25519_signing_cert expired at .*npm run keys -- renew old/);
  });

  it("warns, without stopping, inside the warning window", () => {
    const dir = join(projectDir, "soon");
    mkdirSync(dir, { mode: 0o700 });
    initRelayKeys(dir, "soon", { nickname: "SoonRelay" }, 30);
    renewSigningKey(dir, "soon", 6);
    const { warnings } = planFleet(config([{ name: "soon", nickname: "SoonRelay", keysDir: relayDir(dir, "soon") }]), { projectDir, now });
    // The certificate's warning, then the one for the documentation address the fixture uses (lib/plan/publication.ts).
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/relay soon: .*expires at .* in \d\.\d days/);
    expect(warnings[1]).toMatch(/relay soon: relays\[0\]\.ipv4\.address 198\.51\.100\.10 is a documentation address/);
  });

  it("reports every broken relay at once", () => {
    const broken = join(projectDir, "broken");
    mkdirSync(broken, { mode: 0o700 });
    copyFileSync(join(relayDir(store, "exit-a"), "ed25519_master_id_public_key"), join(broken, "ed25519_master_id_public_key"));
    chmodSync(broken, 0o700);
    let error: FleetError | undefined;
    try {
      planFleet(
        config([
          { name: "exit-a", nickname: "ExitA" },
          { name: "missing", nickname: "Missing" },
          { name: "broken", nickname: "Broken", keysDir: broken },
          { name: "clone", nickname: "Clone", keysDir: relayDir(store, "exit-a") },
        ]),
        { projectDir, now },
      );
    } catch (err) {
      error = err as FleetError;
    }
    expect(error).toBeInstanceOf(FleetError);
    expect(error!.problems).toHaveLength(6);
    expect(error!.problems[0]).toMatch(/relay missing: .*keys\/missing\/ssh_host_ed25519_key\.pub is missing; .*npm run keys -- init missing/);
    expect(error!.problems[1]).toMatch(/relay missing: .*keys\/missing\/ed25519_master_id_public_key is missing/);
    expect(error!.problems[2]).toMatch(/relay broken: .*broken\/ssh_host_ed25519_key\.pub is missing/);
    expect(error!.problems[3]).toMatch(/relay broken: .*broken\/ed25519_signing_secret_key is missing/);
    expect(error!.problems.slice(4).join("\n")).toMatch(/relays exit-a and clone have the same RSA fingerprint/);
  });
});
