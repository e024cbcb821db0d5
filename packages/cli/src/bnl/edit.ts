/**
 * Turning `key=value` arguments into node fields, with admin-friendly
 * normalisation (IPv6 brackets and case, fingerprint colons, CIDR text),
 * and checking the result. Keys (case-insensitive, ClueVPN spelled them
 * `IPv4=`, `Port=`, `Subnet=`):
 *
 *   ipv4=ADDR ipv6=ADDR host=DNSNAME   one endpoint each (empty value: remove)
 *   endpoint=HOST:PORT                 extra endpoint ([v6]:port for IPv6)
 *   port=N                             port of the ipv4/ipv6/host endpoints (default 3406)
 *   subnet=CIDR                        repeatable; on modify, replaces all subnets
 *   fingerprint=HEX|AA:BB:…            certificate SHA-256 pin (empty: remove)
 *   relay=yes|no  prefer=ipv4|ipv6  id=N  tag=T (repeatable; replaces all tags)
 *   mac=AA:BB:CC:DD:EE:FF              switch mode: a MAC that is this node's (repeatable;
 *                                      on modify, replaces all; empty value removes them)
 *   name=NEW                           (modify only) rename
 */
import { BNL_DEFAULT_PORT, normaliseFingerprint, normaliseHost, normaliseMac, parseCidr, type BnlEndpoint, type BnlNode } from '@cluevpn/bnl';
import { BnlCliError, BnlExit } from './exit-codes.js';

const KEYS = new Set(['ipv4', 'ipv6', 'host', 'endpoint', 'port', 'subnet', 'fingerprint', 'relay', 'prefer', 'id', 'tag', 'mac', 'name']);

/** One parsed argument. */
export interface KeyValue {
  key: string;
  value: string;
}

/** Splits `key=value` arguments; throws a usage error for anything else or an unknown key. */
export function parseKeyValues(args: readonly string[], allowName: boolean): KeyValue[] {
  return args.map((a) => {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new BnlCliError(BnlExit.usage, `"${a}" is not key=value`, 'write settings as key=value, e.g. ipv4=192.0.2.1 subnet=10.1.0.0/16');
    const key = a.slice(0, eq).toLowerCase();
    if (!KEYS.has(key) || (key === 'name' && !allowName)) {
      throw new BnlCliError(BnlExit.usage, `unknown key "${a.slice(0, eq)}"`, `use one of ${[...KEYS].filter((k) => allowName || k !== 'name').join(', ')}`);
    }
    return { key, value: a.slice(eq + 1) };
  });
}

/** Normalises a CIDR typed by the admin; throws an `invalid` error with the canonical form when host bits are set. */
export function cidrArg(node: string, input: string): string {
  const r = parseCidr(input.trim().replace(/^\[(.*)\](\/\d+)$/, '$1$2'));
  if (!r.ok && r.reason === 'host-bits') throw new BnlCliError(BnlExit.invalid, `node "${node}": subnet ${input} has host bits set`, `write ${r.canonical}`);
  if (!r.ok) throw new BnlCliError(BnlExit.invalid, `node "${node}": subnet "${input}" is not an IPv4 or IPv6 CIDR prefix`, 'write it as ADDRESS/LENGTH, e.g. 10.1.0.0/16 or fd00:1::/64');
  return r.canonical;
}

function portArg(node: string, v: string): number {
  if (!/^[0-9]{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new BnlCliError(BnlExit.invalid, `node "${node}": port "${v}" is not 1-65535`, `give a port number, default ${BNL_DEFAULT_PORT}`);
  return Number(v);
}

function hostArg(node: string, key: 'ipv4' | 'ipv6' | 'host', v: string): string {
  const h = normaliseHost(v);
  const want = key === 'host' ? 'dns' : key;
  if (!h || h.kind !== want) {
    const what = key === 'host' ? 'a DNS name' : key === 'ipv4' ? 'an IPv4 address' : 'an IPv6 address';
    throw new BnlCliError(BnlExit.invalid, `node "${node}": ${key}=${v} is not ${what}`, key === 'host' ? 'use ipv4= or ipv6= for addresses' : `use ${key === 'ipv4' ? 'ipv6=' : 'ipv4='} or host= if that is what it is`);
  }
  return h.host;
}

function endpointArg(node: string, v: string): BnlEndpoint {
  const m = /^\[([^\]]+)\]:([0-9]+)$/.exec(v) ?? /^([^:]+):([0-9]+)$/.exec(v);
  const h = m ? normaliseHost(m[1]) : null;
  if (!m || !h) throw new BnlCliError(BnlExit.invalid, `node "${node}": endpoint "${v}" is not HOST:PORT`, 'write 192.0.2.1:3406, [2001:db8::1]:3406 or vpn.example.org:3406');
  return { host: h.host, port: portArg(node, m[2]) };
}

function kindOf(host: string): 'ipv4' | 'ipv6' | 'dns' {
  return normaliseHost(host)?.kind ?? 'dns';
}

/**
 * Applies `kvs` to `node` (a fresh node for `add`) and returns the edited
 * copy. For `add`, `subnet=` and `tag=` accumulate; for `modify`, giving
 * them replaces the whole list.
 */
export function applyKeyValues(node: BnlNode, kvs: readonly KeyValue[], mode: 'add' | 'modify'): BnlNode {
  const n: BnlNode = { ...node, endpoints: node.endpoints.map((e) => ({ ...e })), subnets: [...node.subnets], ...(node.tags ? { tags: [...node.tags] } : {}), ...(node.mac ? { mac: [...node.mac] } : {}) };
  const label = node.name;
  const portKv = kvs.filter((kv) => kv.key === 'port').pop();
  const port = portKv ? portArg(label, portKv.value) : undefined;
  let subnetsTouched = false;
  let tagsTouched = false;
  let macsTouched = false;
  let hostsTouched = false;
  for (const { key, value } of kvs) {
    switch (key) {
      case 'ipv4':
      case 'ipv6':
      case 'host': {
        hostsTouched = true;
        const kind = key === 'host' ? 'dns' : key;
        const keep = n.endpoints.filter((e) => kindOf(e.host) !== kind);
        const oldPort = n.endpoints.find((e) => kindOf(e.host) === kind)?.port;
        n.endpoints = value === '' ? keep : [...keep, { host: hostArg(label, key, value), port: port ?? oldPort ?? BNL_DEFAULT_PORT }];
        break;
      }
      case 'endpoint':
        n.endpoints.push(endpointArg(label, value));
        break;
      case 'subnet':
        if (mode === 'modify' && !subnetsTouched) n.subnets = [];
        subnetsTouched = true;
        if (value !== '') n.subnets.push(cidrArg(label, value));
        break;
      case 'fingerprint':
        if (value === '') delete n.fingerprint;
        else {
          const f = normaliseFingerprint(value);
          if (!f) throw new BnlCliError(BnlExit.invalid, `node "${label}": fingerprint is not a SHA-256 digest`, 'give 64 hex digits, with or without colons (cluevpn cert prints it)');
          n.fingerprint = f;
        }
        break;
      case 'relay':
        if (!/^(yes|no|true|false|1|0)$/i.test(value)) throw new BnlCliError(BnlExit.invalid, `node "${label}": relay=${value}`, 'write relay=yes or relay=no');
        if (/^(yes|true|1)$/i.test(value)) n.relay = true;
        else delete n.relay;
        break;
      case 'prefer':
        if (value !== 'ipv4' && value !== 'ipv6') throw new BnlCliError(BnlExit.invalid, `node "${label}": prefer=${value}`, 'write prefer=ipv4 or prefer=ipv6');
        n.prefer = value;
        break;
      case 'id':
        if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > 0xffffffff) throw new BnlCliError(BnlExit.invalid, `node "${label}": id=${value}`, 'give a whole number from 1 to 4294967295, or leave id out to have one assigned');
        n.id = Number(value);
        break;
      case 'tag':
        if (!tagsTouched) n.tags = [];
        tagsTouched = true;
        if (value !== '') n.tags?.push(value);
        break;
      case 'mac': {
        if (!macsTouched) n.mac = [];
        macsTouched = true;
        if (value === '') break;
        const m = normaliseMac(value);
        if (!m) throw new BnlCliError(BnlExit.invalid, `node "${label}": mac=${value} is not a MAC address`, 'write six hex pairs, e.g. mac=02:00:0a:00:00:01');
        n.mac?.push(m);
        break;
      }
      case 'name':
        n.name = value;
        break;
      case 'port':
        break;
    }
  }
  if (port !== undefined && !hostsTouched) {
    n.endpoints = n.endpoints.map((e) => ({ ...e, port }));
    if (n.endpoints.length === 0) throw new BnlCliError(BnlExit.invalid, `node "${label}": port= given but the node has no address`, 'add ipv4=, ipv6= or host= as well');
  }
  if (n.tags && n.tags.length === 0) delete n.tags;
  if (n.mac && n.mac.length === 0) delete n.mac;
  // A relay is what nodes behind NAT reach first: it must be reachable itself. Refused
  // here, where lists are written, not when a list is read: a list signed before
  // this rule stays valid (the daemon only ever uses relays with an endpoint).
  if (n.relay === true && n.endpoints.length === 0) {
    throw new BnlCliError(BnlExit.invalid, `node "${label}": relay=yes needs a listed endpoint [ERR_BNL_RELAY_ENDPOINT]`, 'add ipv4=, ipv6= or host= (a relay must be reachable), or relay=no');
  }
  return n;
}
