/**
 * Addresses as values. Expected spellings come from an independent oracle,
 * Python's ipaddress module (RFC 5952 compression), never from the code
 * under test.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { canonicalAddress, inSubnet, isIPv6LinkLocal, macProblem, parseAddress, parsePrefix } from "../../lib/tor/addresses";

const SPELLINGS = ["2001:db8::10", "2001:0db8:0000:0000:0000:0000:0000:0010", "2001:DB8:0:0:0:0:0:10", "::", "::1", "fe80::1", "1:2:3:4:5:6:7:8", "1:0:0:2:0:0:0:3",
  "::ffff:192.0.2.1", "2001:db8:0:1:0:0:0:1", "198.51.100.10", "0.0.0.0", "255.255.255.255", "2606:4700:4700:0:0:0:0:1111"];
const INVALID = ["fe80::1%eth0", "1::2::3", "198.51.100.010", "198.51.100.256", "1:2:3:4:5:6:7:8:9", "12345::", "::g", "198.51.100", "", " 198.51.100.1", "[::1]"];

/** Python's ipaddress: the canonical form, or "INVALID". */
function pythonCanonical(values: string[]): string[] {
  const script = "import ipaddress,json,sys\nout=[]\nfor v in json.load(sys.stdin):\n  try: out.append(str(ipaddress.ip_address(v)))\n  except ValueError: out.append('INVALID')\nprint(json.dumps(out))";
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", script], { input: JSON.stringify(values), encoding: "utf8" })) as string[];
}

describe("parseAddress and canonicalAddress", () => {
  it("spell every address as Python's ipaddress does", () => {
    const expected = pythonCanonical(SPELLINGS);
    expect(SPELLINGS.map((value) => canonicalAddress(parseAddress(value)!))).toEqual(expected);
  });

  it("refuse what Python refuses, and zone ids too (Python takes those; a relay's config must not)", () => {
    expect(pythonCanonical(INVALID.filter((v) => v !== "fe80::1%eth0"))).toEqual(INVALID.filter((v) => v !== "fe80::1%eth0").map(() => "INVALID"));
    for (const value of INVALID) expect(parseAddress(value), value).toBeUndefined();
  });
});

describe("subnets and gateways", () => {
  it("tells whether a gateway is on the relay's subnet", () => {
    expect(inSubnet(parseAddress("198.51.100.1")!, parsePrefix("198.51.100.11/24")!)).toBe(true);
    expect(inSubnet(parseAddress("198.51.101.1")!, parsePrefix("198.51.100.11/24")!)).toBe(false);
    expect(inSubnet(parseAddress("198.51.101.1")!, parsePrefix("198.51.100.11/23")!)).toBe(true);
    expect(inSubnet(parseAddress("2001:db8::1")!, parsePrefix("2001:db8::11/64")!)).toBe(true);
    expect(inSubnet(parseAddress("2001:db8:0:1::1")!, parsePrefix("2001:db8::11/64")!)).toBe(false);
    expect(inSubnet(parseAddress("198.51.100.1")!, parsePrefix("2001:db8::11/64")!)).toBe(false);
  });

  it("knows link-local IPv6 gateways are on-link", () => {
    expect(isIPv6LinkLocal(parseAddress("fe80::1")!)).toBe(true);
    expect(isIPv6LinkLocal(parseAddress("febf::1")!)).toBe(true);
    expect(isIPv6LinkLocal(parseAddress("fec0::1")!)).toBe(false);
    expect(isIPv6LinkLocal(parseAddress("2001:db8::1")!)).toBe(false);
  });

  it("reads prefixes strictly", () => {
    expect(parsePrefix("198.51.100.10/33")).toBeUndefined();
    expect(parsePrefix("2001:db8::10/129")).toBeUndefined();
    expect(parsePrefix("198.51.100.10")).toBeUndefined();
    expect(parsePrefix("198.51.100.10/24/1")).toBeUndefined();
    expect(parsePrefix("2001:db8::10/64")).toMatchObject({ family: 6, prefixLength: 64 });
  });
});

describe("macProblem", () => {
  it("accepts unicast MACs, and refuses multicast, broadcast, all-zero and malformed ones", () => {
    expect(macProblem("BC:24:11:00:00:01")).toBeUndefined();
    expect(macProblem("52:54:00:12:34:56")).toBeUndefined();
    expect(macProblem("01:00:5e:00:00:01")).toMatch(/unicast/);
    expect(macProblem("33:33:00:00:00:01")).toMatch(/unicast/);
    expect(macProblem("ff:ff:ff:ff:ff:ff")).toMatch(/unicast/);
    expect(macProblem("00:00:00:00:00:00")).toMatch(/zeros/);
    expect(macProblem("BC:24:11:00:00")).toMatch(/MAC address/);
    expect(macProblem("BC-24-11-00-00-01")).toMatch(/MAC address/);
  });
});
