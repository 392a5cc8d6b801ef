/**
 * The code's layout, checked from the imports TypeScript itself reads
 * (ts.preProcessFile): lib/ is a stack of folders, each importing only
 * itself and the folders below it; nothing forms a cycle; steps, components
 * and lib keep to their places; and a lib file that says it is pure does no
 * I/O, not even through what it imports. The folder order is written once,
 * here, and the README's map of the code must list the same folders in the
 * same order.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../support/pulumi";

/** lib/'s folders, lowest first: a file may import its own folder and the ones above it in this list. */
export const LIB_LAYERS = ["core", "tor", "snp", "config", "render", "steps", "image", "local", "proxmox", "broker", "testnet", "plan", "deploy", "ops"] as const;

/** test/'s folders: the tiers (unit: no engine, image build or VM; engine: the Pulumi engine and the Proxmox VE double; image: image builds; vm: QEMU), then what they share. */
const TEST_FOLDERS = ["unit", "engine", "image", "vm", "support", "fixtures"];

/** Node modules that touch the world; node:net's address parsers (isIP…) and node:os's homedir are pure and allowed. */
const IO_MODULES = new Set(["fs", "fs/promises", "child_process", "http", "https", "http2", "dgram", "worker_threads", "os", "tls", "readline", "net"]);
const PURE_NAMES: Record<string, RegExp> = { net: /^(isIP|isIPv4|isIPv6)$/, os: /^homedir$/ };

interface Import { target: string; typeOnly: boolean; names: string[] }

function sourceFiles(dir: string): string[] {
  return readdirSync(join(repoRoot, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(repoRoot, path)).isDirectory()) return sourceFiles(path);
    return /\.ts$/.test(name) ? [path] : [];
  });
}

/** Every import of a file: repository-relative targets for relative ones, "node:x" for Node's. */
export function importsOf(file: string, text = readFileSync(join(repoRoot, file), "utf8")): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false);
  const out: Import[] = [];
  for (const statement of source.statements) {
    if (!(ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) || !statement.moduleSpecifier) continue;
    const spec = (statement.moduleSpecifier as ts.StringLiteral).text;
    let typeOnly = false;
    let names: string[] = [];
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      typeOnly = clause?.isTypeOnly ?? false;
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamedImports(bindings)) {
        const values = bindings.elements.filter((e) => !e.isTypeOnly);
        if (!clause?.name && bindings.elements.length > 0 && values.length === 0) typeOnly = true;
        names = values.map((e) => (e.propertyName ?? e.name).text);
      } else if (clause?.name || bindings) names = ["*"];
    } else typeOnly = statement.isTypeOnly;
    if (spec.startsWith(".")) {
      const base = resolve(repoRoot, dirname(file), spec);
      const found = [base + ".ts", join(base, "index.ts"), base].find((p) => existsSync(p) && statSync(p).isFile());
      out.push({ target: found ? relative(repoRoot, found) : `unresolved:${spec}`, typeOnly, names });
    } else if (spec.startsWith("node:")) out.push({ target: spec, typeOnly, names });
  }
  return out;
}

const PROGRAM = ["lib", "cli", "components"].flatMap(sourceFiles).concat("index.ts");
const GRAPH = new Map(PROGRAM.map((file) => [file, importsOf(file)]));
const folderOf = (file: string) => file.split("/")[1]!;

/** Imports that break the layer order, as "lib/a/x.ts -> lib/b/y.ts". */
export function upwardImports(graph: Map<string, Import[]>): string[] {
  const bad: string[] = [];
  for (const [file, imports] of graph) {
    if (!file.startsWith("lib/")) continue;
    const own = LIB_LAYERS.indexOf(folderOf(file) as (typeof LIB_LAYERS)[number]);
    for (const { target } of imports) {
      if (!target.startsWith("lib/")) continue;
      if (LIB_LAYERS.indexOf(folderOf(target) as (typeof LIB_LAYERS)[number]) > own) bad.push(`${file} -> ${target}`);
    }
  }
  return bad;
}

/** Cycles among value imports (type-only imports vanish at run time), each as its files in order. */
export function importCycles(graph: Map<string, Import[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const { target, typeOnly } of graph.get(file) ?? []) {
      if (typeOnly || !graph.has(target)) continue;
      if (state.get(target) === "open") cycles.push([...stack.slice(stack.indexOf(target)), target]);
      else if (!state.has(target)) visit(target);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return cycles;
}

/** The first doc comment of a file: where it says what it is, and whether it is pure. */
const headerOf = (file: string) => /^\s*\/\*\*([\s\S]*?)\*\//.exec(readFileSync(join(repoRoot, file), "utf8"))?.[1] ?? "";

/** Why a file does I/O, through its own imports or what they import; undefined when it does none. */
export function ioPath(graph: Map<string, Import[]>, file: string, seen = new Set<string>()): string | undefined {
  if (seen.has(file)) return undefined;
  seen.add(file);
  for (const { target, typeOnly, names } of graph.get(file) ?? []) {
    if (typeOnly) continue;
    if (target.startsWith("node:")) {
      const module = target.slice(5);
      if (IO_MODULES.has(module) && !(PURE_NAMES[module] && names.every((n) => PURE_NAMES[module]!.test(n)))) return `${file} imports ${target}`;
    } else {
      const why = ioPath(graph, target, seen);
      if (why) return `${file} -> ${why}`;
    }
  }
  return undefined;
}

/**
 * Facts written once (home), reaching other code as generated data. Their
 * text anywhere else in the repository's code is a second copy.
 */
const FACTS: { fact: string; text: string | RegExp; home: string; generated?: string[]; scope?: RegExp }[] = [
  { fact: "the relay-name rule", text: "[a-z0-9][a-z0-9-]{0,62}", home: "lib/core/plain-values.ts", generated: ["tools/broker/internal/protocol/files.json"] },
  // TypeScript holds the same pattern for file names (lib/steps/steps.ts firmwareFile): a copy is looked for in Go.
  { fact: "the vCPU model rule", text: "[A-Za-z0-9][A-Za-z0-9._-]", home: "lib/core/plain-values.ts", generated: ["tools/broker/internal/protocol/files.json"], scope: /^tools\// },
  { fact: "the build host's layout (artifacts/, the build root)", text: /join\([^)]*"(relays|artifacts|sbom|monitoring|vulns)"/, home: "lib/config/build-layout.ts", scope: /^(lib|cli|components|bench)\/|^index\.ts$/ },
  { fact: "tor's DataDirectory in the image", text: '"/var/lib/tor"', home: "lib/image/guest-paths.ts", scope: /^(lib|cli|components)\// },
  // Helpers the program's code had written several times over.
  { fact: "a file's SHA-256 in hex", text: /createHash\("sha256"\)\.update\(readFileSync\([^)]*\)\)\.digest\("hex"\)/, home: "lib/core/digest.ts", scope: /^(lib|cli|components)\// },
  { fact: "a sleep (node:timers/promises has it)", text: "=> setTimeout(", home: "node:timers/promises", scope: /^(lib|cli|components)\// },
  { fact: "a zod refusal in one line", text: '.issues.map((', home: "lib/core/zod-issues.ts", scope: /^(lib|cli|components)\// },
];

/**
 * The project's code, as git sees it: tracked files and new ones, never what
 * .gitignore names (a local stack's build/ and .runtime/, keys, node_modules).
 */
function codeFiles(): string[] {
  const listed = spawnSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z"], { cwd: repoRoot, encoding: "utf8" });
  if (listed.status !== 0) throw new Error(`git ls-files: ${listed.stderr}`);
  return listed.stdout
    .split("\0")
    .filter((path) => path && existsSync(join(repoRoot, path)) && !path.split("/").some((part) => part === "fixtures" || part === "node_modules"))
    // Code in any of the project's languages; relay scripts have no extension.
    .filter((path) => /\.(ts|cjs|go|sh|json|ya?ml)$/.test(path) || path.startsWith("images/rootfs/files/"));
}

/** Every second copy of a fact, as "fact: file"; `extra` adds files as a throwaway change would. */
function secondCopies(extra: Record<string, string> = {}): string[] {
  const texts = new Map(codeFiles().map((file) => [file, () => readFileSync(join(repoRoot, file), "utf8")]));
  for (const [file, text] of Object.entries(extra)) texts.set(file, () => text);
  const found: string[] = [];
  for (const { fact, text, home, generated = [], scope } of FACTS) {
    for (const [file, read] of texts) {
      if (file === home || generated.includes(file) || file === "test/unit/layout.test.ts" || file === "package-lock.json") continue;
      if (scope && !scope.test(file)) continue;
      if (typeof text === "string" ? read().includes(text) : text.test(read())) found.push(`${fact}: ${file}`);
    }
  }
  return found;
}

describe("the code's layout", () => {
  it("keeps every lib file in one of lib/'s folders", () => {
    const stray = PROGRAM.filter((file) => file.startsWith("lib/") && (file.split("/").length !== 3 || !LIB_LAYERS.includes(folderOf(file) as never)));
    expect(stray).toEqual([]);
  });

  it("has no upward import in lib/", () => {
    expect(upwardImports(GRAPH)).toEqual([]);
  });

  it("sees an upward import, as a throwaway change would make one", () => {
    const graph = new Map(GRAPH);
    graph.set("lib/core/run.ts", [...(graph.get("lib/core/run.ts") ?? []), { target: "lib/ops/vulns.ts", typeOnly: false, names: ["x"] }]);
    expect(upwardImports(graph)).toEqual(["lib/core/run.ts -> lib/ops/vulns.ts"]);
  });

  it("has no import cycle, and sees one made on purpose", () => {
    expect(importCycles(GRAPH)).toEqual([]);
    const graph = new Map(GRAPH);
    graph.set("lib/tor/addresses.ts", [...(graph.get("lib/tor/addresses.ts") ?? []), { target: "lib/tor/tor-values.ts", typeOnly: false, names: ["x"] }]);
    expect(importCycles(graph)).toContainEqual(expect.arrayContaining(["lib/tor/addresses.ts", "lib/tor/tor-values.ts"]));
  });

  it("keeps lib free of cli, components and tests; components free of cli; steps free of each other", () => {
    const bad: string[] = [];
    for (const [file, imports] of GRAPH) {
      for (const { target } of imports) {
        if (target.startsWith("unresolved:")) bad.push(`${file}: ${target}`);
        if (target.startsWith("test/")) bad.push(`${file} -> ${target}`);
        if (file.startsWith("lib/") && /^(cli|components)\//.test(target)) bad.push(`${file} -> ${target}`);
        if (file.startsWith("components/") && target.startsWith("cli/")) bad.push(`${file} -> ${target}`);
        if (file.startsWith("cli/steps/") && target.startsWith("cli/")) bad.push(`${file} -> ${target}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it("says in each lib file's header whether it is pure or does I/O, and a pure one does none", () => {
    const unsaid: string[] = [];
    const impure: string[] = [];
    for (const file of PROGRAM.filter((f) => f.startsWith("lib/"))) {
      const header = headerOf(file);
      const io = /\bI\/O:/.test(header);
      const pure = /\bpure\b/i.test(header);
      if (!io && !pure) unsaid.push(file);
      if (pure && !io) {
        const why = ioPath(GRAPH, file);
        if (why) impure.push(why);
      }
    }
    expect(unsaid).toEqual([]);
    expect(impure).toEqual([]);
  });

  it("finds the I/O a pure file would do through an import", () => {
    const graph = new Map(GRAPH);
    graph.set("lib/core/shell-quote.ts", [{ target: "lib/core/run.ts", typeOnly: false, names: ["run"] }]);
    expect(ioPath(graph, "lib/core/shell-quote.ts")).toMatch(/^lib\/core\/shell-quote\.ts -> lib\/core\/run\.ts imports node:/);
    expect(ioPath(graph, "lib/render/hardening.ts")).toBeUndefined(); // node:net's isIP only
  });

  it("keeps every test in its tier's folder, and each tier within its means", () => {
    const dirs = readdirSync(join(repoRoot, "test")).sort();
    expect(dirs.filter((d) => !TEST_FOLDERS.includes(d))).toEqual([]);
    // What each tier may not use: the engine (TestProject), an image build, a booted VM.
    const forbidden: Record<string, RegExp> = {
      unit: /^(TestProject|debianBase|buildRelayIso|bootIso|startLocalVm|brokerModeImage)$/,
      engine: /^(bootIso|startLocalVm)$/,
      image: /^(TestProject|bootIso|startLocalVm)$/,
    };
    const bad: string[] = [];
    for (const [tier, names] of Object.entries(forbidden)) {
      for (const file of sourceFiles(`test/${tier}`)) {
        for (const { target, names: used } of importsOf(file)) {
          if (target.startsWith("test/support/")) for (const name of used) if (names.test(name)) bad.push(`${file} uses ${name}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it("writes each shared fact once: other code, in any language, gets it as data", () => {
    expect(secondCopies()).toEqual([]);
    // A throwaway second copy, as a Go file would carry it, is found.
    expect(secondCopies({ "tools/broker/internal/x.go": "var re = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)" })).toEqual([
      "the relay-name rule: tools/broker/internal/x.go",
    ]);
  });

  it("is mapped in the README: the same folders, in the same order", () => {
    const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
    const tree = /```text\nlib\/\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(tree, "README.md has a ```text block starting with lib/").toBeDefined();
    const folders = [...tree!.matchAll(/^[ │├└─]*([a-z-]+)\/\s/gm)].map((m) => m[1]);
    expect(folders).toEqual([...LIB_LAYERS]);
  });
});
