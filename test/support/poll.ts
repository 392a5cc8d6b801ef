/**
 * Waits for something the test cannot be told about: asks `ready` every
 * `intervalMs` until it answers true or `seconds` have passed, and returns
 * its last answer, so the caller's expect says what was not reached.
 */
import { setTimeout as sleep } from "node:timers/promises";

export async function poll(ready: () => boolean | Promise<boolean>, options: { seconds: number; intervalMs?: number }): Promise<boolean> {
  const deadline = Date.now() + options.seconds * 1000;
  for (;;) {
    if (await ready()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(options.intervalMs ?? 100);
  }
}
