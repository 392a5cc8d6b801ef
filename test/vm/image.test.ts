/**
 * The real image pipeline: a Debian base by mmdebstrap, a relay overlay, a
 * UKI by ukify, an El Torito ISO, SBOMs by Syft; then the ISO booted under
 * QEMU + OVMF from an IDE CD-ROM on a q35 machine, where tor must print the
 * fingerprints tor gives for the relay's keys, its SSH server must hand
 * over its state to the real collector, and the ACPI power button must power
 * it off cleanly.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { torListFingerprint } from "../../lib/tor/key-store";
import { runningPid } from "../../lib/local/local-vm";
import { CLEAN_SHUTDOWN_SECONDS } from "../../lib/local/qemu";
import type { BuiltImage } from "../../lib/image/relay-build";
import { askRelay } from "../../lib/deploy/relay-channel";
import { healthProblems, parseHealthReport } from "../../lib/ops/relay-health";
import { checkNtorKey } from "../../lib/tor/tor-keys";
import { makeTestKeys } from "../support/fleet";
import { bootIso, buildRelayIso, debianBase, hmp, qemuTargetFor, runStep, waitFor } from "../support/images";
import { toolEnv } from "../support/pulumi";
import { freePort } from "../support/sshd";
import { privateTmpDir } from "../support/tmp";
import { poll } from "../support/poll";

/** An exit, so the boot shows whether tor can read its resolver configuration. */
const RELAY = { name: "boot-1", nickname: "BootTestOne", vmId: 100, mac: "52:54:00:12:34:01", exit: { enabled: true }, nameservers: ["10.0.2.3"] };

describe("the Debian relay image", () => {
  const dir = privateTmpDir("image");
  let base: string;
  let iso: string;
  let uki: string;
  let built: BuiltImage;

  beforeAll(() => {
    base = debianBase();
    makeTestKeys(dir, [{ name: "boot-1", nickname: "BootTestOne", node: "local", vmId: 100, exit: true }]);
    mkdirSync(join(dir, "collected"), { mode: 0o700 });
    built = buildRelayIso(dir, base, RELAY, join(dir, "collected"), join(dir, "out"));
    ({ iso, uki } = built);
  }, 900_000);

  it("is a UKI with the kernel, both initrds, the command line and the base's os-release", () => {
    // ukify 254 has no `inspect`; read the PE sections with pefile, as ukify itself does.
    const inspect = execFileSync(
      "/usr/bin/python3",
      ["-c", "import pefile,sys\nfor s in pefile.PE(sys.argv[1]).sections:\n  n=s.Name.rstrip(b'\\0').decode()\n  print(n, s.get_data().rstrip(b'\\0').decode('latin1')[:300] if n in ('.cmdline','.osrel','.uname') else s.SizeOfRawData)", uki],
      { encoding: "utf8" },
    );
    for (const section of [".linux", ".initrd", ".cmdline", ".osrel", ".uname"]) expect(inspect).toContain(section);
    expect(inspect).toMatch(/rdinit=\/init console=ttyS0/);
    expect(inspect).toMatch(/Debian GNU\/Linux 12/);
    expect(statSync(iso).size).toBeGreaterThan(statSync(uki).size);
  });

  it("is signed for Secure Boot when a key is configured, and only then", () => {
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=diskless-relays test db key",
      "-keyout", join(dir, "db.key"), "-out", join(dir, "db.crt")], { stdio: "ignore" });
    const signed = buildRelayIso(dir, base, RELAY, join(dir, "collected"), join(dir, "out-signed"), {
      secureBoot: { privateKeyFile: "db.key", certificateFile: "db.crt" },
    });
    const sbverify = (file: string) => spawnSync("sbverify", ["--cert", join(dir, "db.crt"), file], { encoding: "utf8" });
    expect(sbverify(signed.uki).status, sbverify(signed.uki).stderr).toBe(0);
    expect(sbverify(uki).status).not.toBe(0);
  });

  it("keeps its build output private, and leaves no unpacked key behind", () => {
    expect(statSync(join(dir, "out")).mode & 0o777).toBe(0o700);
    expect(statSync(iso).mode & 0o077).toBe(0);
    expect(spawnSync("find", [join(dir, "out"), "-name", "staging-*", "-o", "-name", "overlay.cpio"], { encoding: "utf8" }).stdout).toBe("");
  });

  it("names its ISO after the ISO's content, and says at the ISO's root which relay and image it holds", () => {
    const sha = execFileSync("sha256sum", [iso], { encoding: "utf8" }).split(" ")[0]!;
    expect(built.isoName).toBe(`relay-BootTestOne-${built.imageDigest.slice(0, 12)}-${sha.slice(0, 8)}.iso`);
    const label = join(dir, "label.json");
    execFileSync("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", "/relay.json", label], { stdio: "ignore" });
    expect(JSON.parse(readFileSync(label, "utf8"))).toEqual({ relay: "boot-1", nickname: "BootTestOne", imageDigest: built.imageDigest });
  });

  it("carries /etc and its own directories with the modes the base needs: only the key directory is private", () => {
    // The overlay is the UKI's second initrd: read its cpio listing (newc, uncompressed) from the .initrd section.
    const listing = execFileSync(
      "/usr/bin/python3",
      ["-c", "import pefile,sys,re\nd=[s for s in pefile.PE(sys.argv[1]).sections if s.Name.rstrip(b'\\0')==b'.initrd'][0].get_data()\nfor m in re.finditer(rb'070701([0-9A-F]{8})([0-9A-F]{8})[0-9A-F]{72}([0-9A-F]{8})[0-9A-F]{8}', d):\n  n=int(m.group(3),16); name=d[m.end():m.end()+n-1].decode('latin1')\n  print(oct(int(m.group(2),16)&0o7777), name)", uki],
      { encoding: "utf8" },
    );
    const mode = (path: string) => new RegExp(`^(0o\\d+) (\\./)?${path.replace(/\./g, "\\.")}$`, "m").exec(listing)?.[1];
    expect(mode("etc")).toBe("0o755");
    expect(mode("etc/relay")).toBe("0o755");
    expect(mode("etc/relay/keys")).toBe("0o700");
    expect(mode("etc/relay/keys/secret_id_key")).toBe("0o600");
    expect(mode("etc/tor/torrc")).toBe("0o644");
  });

  describe("booted under QEMU from ide2 on q35 with OVMF", () => {
    let vm: Awaited<ReturnType<typeof bootIso>>;
    let sshPort: number;
    let target: ReturnType<typeof qemuTargetFor>;
    beforeAll(async () => {
      sshPort = await freePort();
      target = qemuTargetFor(dir, RELAY.mac, sshPort);
      vm = await bootIso(iso, target);
    });
    afterAll(async () => vm?.stop());

    it("runs tor with exactly the identity tor derives from the relay's keys", async () => {
      const expected = torListFingerprint(join(dir, "keys", "boot-1"), "BootTestOne");
      const rsa = await waitFor(vm.console, /identity key fingerprint is 'BootTestOne ([0-9A-F]{40})'/, 240);
      const ed = await waitFor(vm.console, /ed25519 fingerprint is 'BootTestOne ([A-Za-z0-9+/]{43})'/, 30);
      expect(rsa[1]).toBe(expected.rsa);
      expect(ed[1]).toBe(expected.ed25519);
      expect(vm.console()).not.toMatch(/Kernel panic|refusing to start tor/);
    }, 300_000);

    it("answers health over the pinned channel: its image, tor's fingerprints, its ORPort, a resolver config tor can read", async () => {
      const expected = torListFingerprint(join(dir, "keys", "boot-1"), "BootTestOne");
      const channel = { host: "127.0.0.1", port: sshPort, user: "root", privateKeyFile: join(dir, "keys", "collector"), hostPublicKey: built.hostPublicKey, connectTimeoutSeconds: 10 };
      let problems: string[] = ["not asked yet"];
      for (let i = 0; i < 30 && problems.length > 0; i++) {
        const answer = await askRelay(channel, "health");
        problems = answer.ok
          ? healthProblems(parseHealthReport(answer.stdout.toString()), { imageDigest: built.imageDigest, rsaFingerprint: expected.rsa, ed25519Identity: expected.ed25519, orPort: 9001, exit: true })
          : [answer.error];
        if (problems.length > 0) await new Promise((resolve) => setTimeout(resolve, 2000));
      }
      expect(problems).toEqual([]);
      // tor, as debian-tor, could stat and read /etc/resolv.conf: no fallback to 127.0.0.1.
      expect(vm.console()).not.toMatch(/Unable to stat resolver configuration|Permission denied/);
    }, 120_000);

    it("hands its onion keys to the collection step over SSH, with the pinned host key", async () => {
      await waitFor(vm.console, /Server listening on/, 60);
      const relayDir = join(dir, "relay-build");
      const result = runStep("collect-state", {
        relay: "boot-1",
        relayDir,
        imageDigest: built.imageDigest,
        channel: { host: "127.0.0.1", port: sshPort, user: "root", privateKeyFile: join(dir, "keys", "collector"), hostPublicKey: built.hostPublicKey, connectTimeoutSeconds: 10 },
        target,
        allowFreshOnionKeys: false,
      });
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/relay boot-1: collected .*keys\/secret_onion_key_ntor/);
      // tor made these onion keys on first boot inside the VM; the collector validated them.
      const out = join(relayDir, "collected", built.imageDigest.slice(0, 12));
      expect(() => checkNtorKey(readFileSync(join(out, "keys", "secret_onion_key_ntor")))).not.toThrow();
    }, 120_000);

    it("powers off on the ACPI power button, as a redeploy presses it: tor stopped at once with SIGTERM, then the VM ends, long before the hard stop", async () => {
      const began = Date.now();
      await hmp(join(target.runDir, "monitor.sock"), "system_powerdown");
      await waitFor(vm.console, /relay-shutdown: done/, CLEAN_SHUTDOWN_SECONDS);
      const text = vm.console();
      expect(text).toMatch(/relay-acpid: power button pressed/);
      // tor's own word that it took SIGTERM: a relay exits at once on it, closing its connections. Under
      // QEMU's emulation tor's main thread sometimes blocks SIGTERM (relay-shutdown's header): then the script
      // must have seen that in tor's signal masks and killed it, which closes its connections as well.
      const stopped = /relay-shutdown: stopping tor[\s\S]*(Catching signal TERM, exiting cleanly|relay-shutdown: tor \(\d+\) blocks SIGTERM in every thread[\s\S]*relay-shutdown: killing tor)/.exec(text);
      expect(stopped, "tor neither took SIGTERM nor was found blocking it").not.toBeNull();
      if (stopped![1]!.startsWith("Catching")) expect(text).not.toMatch(/tor still runs after/);
      expect(text).not.toMatch(/tor still runs after 5 s/);
      await poll(() => runningPid(target.runDir) === undefined, { seconds: 30 });
      expect(runningPid(target.runDir)).toBeUndefined();
      expect(Date.now() - began).toBeLessThan(CLEAN_SHUTDOWN_SECONDS * 1000);
    }, 120_000);
  });
});

describe("SBOMs of the Debian base by Syft", () => {
  const dir = privateTmpDir("sbom");
  let syftJson: any;
  let cyclonedx: any;
  beforeAll(() => {
    const base = debianBase();
    execFileSync("syft", ["scan", `dir:${base}/rootfs`, "--quiet", "-o", `syft-json=${dir}/base.syft.json`, "-o", `cyclonedx-json=${dir}/base.cdx.json`], { env: toolEnv() });
    syftJson = JSON.parse(readFileSync(join(dir, "base.syft.json"), "utf8"));
    cyclonedx = JSON.parse(readFileSync(join(dir, "base.cdx.json"), "utf8"));
  }, 300_000);

  it("lists tor, the kernel and the SSH server in Syft JSON", () => {
    const names = new Set(syftJson.artifacts.map((a: any) => a.name));
    for (const name of ["tor", "openssh-server", "busybox"]) expect(names.has(name), name).toBe(true);
    expect([...names].some((n) => /^linux-image-.*-cloud-amd64$/.test(n as string))).toBe(true);
    expect(syftJson.artifacts.find((a: any) => a.name === "tor").type).toBe("deb");
  });

  it("is valid CycloneDX holding tor as a component with a purl", () => {
    expect(cyclonedx.bomFormat).toBe("CycloneDX");
    const tor = cyclonedx.components.find((c: any) => c.name === "tor");
    expect(tor.purl).toMatch(/^pkg:deb\/debian\/tor@/);
  });

  it("holds no key material: the base has no keys at all", () => {
    const text = JSON.stringify(syftJson);
    expect(text).not.toMatch(/secret_id_key|ed25519_signing_secret_key|secret_onion_key/);
  });
});
