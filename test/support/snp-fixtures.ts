import { readFileSync } from "node:fs";
import path from "node:path";
import { repoRoot } from "./pulumi";

/**
 * Public SEV-SNP test data, kept in the repository (sources in
 * test/fixtures/snp/VECTORS.md: virtee/sev-snp-measure's test fixtures and
 * google/go-sev-guest's verify/testdata).
 */
const SNP_FIXTURES = path.join(repoRoot, "test", "fixtures", "snp");

export function fixture(name: string): Buffer {
  return readFileSync(path.join(SNP_FIXTURES, name));
}

export function fixturePath(name: string): string {
  return path.join(SNP_FIXTURES, name);
}

/** MEASUREMENT of attestation.bin, as VECTORS.md publishes it. */
export const FIXTURE_MEASUREMENT =
  "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01";
