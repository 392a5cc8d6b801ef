/**
 * Every relay VM's hardware RNG: a virtio RNG fed from the host's
 * /dev/urandom, so the guest kernel (which loads virtio_rng) has entropy from
 * its first second, for tor's keys and TLS. One description for both
 * places relays run: Proxmox VE's rng0 (the provider's `rngs`) and the local stack's
 * QEMU arguments (lib/local/qemu.ts), which are what qemu-server makes of it.
 *
 * Read in qemu-server e6352be (9.2.6), src/PVE/QemuServer/RNG.pm ($rng_fmt,
 * print_rng_object_commandline, print_rng_device_commandline; in
 * PVE/QemuServer.pm before 9.0): source is one of /dev/urandom, /dev/random,
 * /dev/hwrng; max_bytes (default 1024, 0 turns the limit off) bytes every
 * period milliseconds (default 1000); the command line is
 * `-object rng-random,filename=SOURCE,id=rng0` and
 * `-device virtio-rng-pci,rng=rng0,max-bytes=N,period=MS` (no limiter when
 * max_bytes is 0). Pure.
 */
export interface RelayRng {
  source: "/dev/urandom" | "/dev/random" | "/dev/hwrng";
  maxBytes: number;
  period: number;
}

/** qemu-server's own defaults, spelled out: 1 KiB/s, which no guest starves on and no guest drains the host with. */
export const RELAY_RNG: RelayRng = { source: "/dev/urandom", maxBytes: 1024, period: 1000 };

/** As the proxmoxve provider's VmLegacy takes it (`rngs`, sent as rng0). */
export function proxmoxRngs(rng: RelayRng = RELAY_RNG): { source: string; maxBytes: number; period: number }[] {
  return [{ source: rng.source, maxBytes: rng.maxBytes, period: rng.period }];
}
