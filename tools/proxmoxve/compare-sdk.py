#!/usr/bin/env python3
"""Compare the plugin's package schema with a published nodejs SDK.

    compare-sdk.py SCHEMA.json node_modules/@muhlba91/pulumi-proxmoxve

SCHEMA.json is what `pulumi-tfgen-proxmoxve schema` writes (build.sh leaves
it at cmd/pulumi-resource-proxmoxve/schema.json) or what
`pulumi package get-schema` prints. For every resource, function and object
type the schema and the SDK's .d.ts declarations must have the same property
names, the same optional/required inputs and the same coarse TypeScript type.
Prints one line per difference; exits 1 if there are any.
"""
import json
import os
import re
import sys


def parse_dts(path):
    """Return {(namespace, name): {property: (optional, type)}} for every
    interface and class declared in a .d.ts file."""
    text = re.sub(r'/\*.*?\*/', '', open(path).read(), flags=re.S)
    # Join properties whose type spans several lines ({ [key: string]: T }).
    lines, buf = [], ''
    for line in text.split('\n'):
        buf = f'{buf} {line.strip()}' if buf else line.strip()
        if re.match(r'(readonly )?\w+\??: ', buf) and buf.count('{') > buf.count('}'):
            continue
        lines.append(buf)
        buf = ''

    blocks, ns, stack, cur = {}, [], [], None
    for t in lines:
        m = re.match(r'(?:export )?(?:declare )?namespace (\w+) \{$', t)
        if m:
            stack.append('ns')
            ns.append(m.group(1))
            continue
        m = re.match(r'(?:export )?(?:declare )?(?:interface|class) (\w+)\b.*\{$', t)
        if m and cur is None:
            cur = ('.'.join(ns), m.group(1))
            blocks[cur] = {}
            stack.append('block')
            continue
        if cur is not None and stack[-1] == 'block':
            m = re.match(r'(readonly )?(\w+)(\?)?: (.*);$', t)
            if m:
                blocks[cur][m.group(2)] = (bool(m.group(3)), m.group(4))
        delta = t.count('{') - t.count('}')
        stack.extend(['other'] * max(delta, 0))
        for _ in range(max(-delta, 0)):
            kind = stack.pop()
            if kind == 'ns':
                ns.pop()
            elif kind == 'block':
                cur = None
    return blocks


def ts_type(tstr):
    """Reduce a declared TypeScript type to the shape ts_of_schema produces."""
    t = tstr.replace('| undefined', '')
    t = re.sub(r'pulumi\.(Input|Output)<', '<', t)
    t = re.sub(r'\b(inputs|outputs)\.', '', t)
    t = re.sub(r'[<>\s]', '', t)
    return re.sub(r'Args\b', '', t).replace(';}', '}').rstrip(';')


def type_name(tok):
    """proxmoxve:sdn/getSubnetDhcpRange:getSubnetDhcpRange -> ('sdn', 'GetSubnetDhcpRange')"""
    _, mod, name = tok.split(':')
    parts = mod.split('/')[:-1]
    return ('' if parts == ['index'] else '.'.join(parts)), name[0].upper() + name[1:]


def ts_of_schema(p):
    if '$ref' in p:
        ref = p['$ref']
        if ref.startswith('pulumi.json#/'):
            return {'pulumi.json#/Any': 'any'}.get(ref, ref)
        ns, name = type_name(ref[len('#/types/'):])
        return f'{ns}.{name}' if ns else name
    t = p.get('type')
    if t == 'array':
        return ts_of_schema(p['items']) + '[]'
    if t == 'object':
        return '{[key:string]:' + ts_of_schema(p['additionalProperties']) + '}'
    return {'string': 'string', 'integer': 'number', 'number': 'number', 'boolean': 'boolean'}.get(t, '?')


def main():
    schema_path, sdk = sys.argv[1], sys.argv[2]
    schema = json.load(open(schema_path))
    problems = []

    def compare(where, props, required, declared, check_required=True):
        if declared is None:
            problems.append(f'{where}: not declared in the SDK')
            return
        for k in sorted(set(props) - set(declared)):
            problems.append(f'{where}: {k} only in the schema')
        for k in sorted(set(declared) - set(props)):
            problems.append(f'{where}: {k} only in the SDK')
        for k in sorted(set(props) & set(declared)):
            optional, tstr = declared[k]
            if check_required and (k in required) == optional:
                problems.append(f'{where}.{k}: required in schema={k in required}, optional in SDK={optional}')
            a, b = ts_of_schema(props[k]), ts_type(tstr)
            if a != b:
                problems.append(f'{where}.{k}: type {a} in schema, {b} in SDK')

    def dts_of(tok):
        mod = tok.split(':')[1]
        path = os.path.join(sdk, mod.removeprefix('index/') + '.d.ts')
        return parse_dts(path) if os.path.exists(path) else {}

    for tok, r in sorted(schema['resources'].items()):
        name = tok.split(':')[2]
        dts = dts_of(tok)
        cls = dts.get(('', name))
        outputs = None
        if cls is not None:
            outputs = {k: ('| undefined' in t, t) for k, (_, t) in cls.items()
                       if k not in ('__pulumiType', 'id', 'urn')}
        compare(f'{tok} outputs', r.get('properties', {}), set(r.get('required', [])), outputs)
        compare(f'{tok} args', r.get('inputProperties', {}), set(r.get('requiredInputs', [])),
                dts.get(('', name + 'Args'), {} if not r.get('inputProperties') else None))
        compare(f'{tok} state', r.get('stateInputs', {}).get('properties', {}), set(),
                dts.get(('', name + 'State')), check_required=False)

    for tok, fn in sorted(schema['functions'].items()):
        if tok.startswith('pulumi:providers:'):
            continue
        name = tok.split(':')[2]
        name = name[0].upper() + name[1:]
        dts = dts_of(tok)
        inputs, outputs = fn.get('inputs', {}), fn.get('outputs', {})
        compare(f'{tok} args', inputs.get('properties', {}), set(inputs.get('required', [])),
                dts.get(('', name + 'Args'), {} if not inputs.get('properties') else None))
        compare(f'{tok} result', outputs.get('properties', {}), set(outputs.get('required', [])),
                dts.get(('', name + 'Result')))

    tin = parse_dts(os.path.join(sdk, 'types/input.d.ts'))
    tout = parse_dts(os.path.join(sdk, 'types/output.d.ts'))
    for tok, ty in sorted(schema['types'].items()):
        if ty.get('type') != 'object':
            continue
        key = type_name(tok)
        if key not in tin and key not in tout:
            problems.append(f'{tok}: type not declared in the SDK')
        if key in tin:
            compare(f'{tok} (input)', ty.get('properties', {}), set(ty.get('required', [])), tin[key])
        if key in tout:
            compare(f'{tok} (output)', ty.get('properties', {}), set(ty.get('required', [])), tout[key],
                    check_required=False)

    provider = parse_dts(os.path.join(sdk, 'provider.d.ts'))
    p = schema['provider']
    compare('provider args', p.get('inputProperties', {}), set(p.get('requiredInputs', [])),
            provider.get(('', 'ProviderArgs')))

    for line in problems:
        print(line)
    print(f'{len(problems)} differences', file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
