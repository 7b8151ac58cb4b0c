// The proxy's address rules: --bind (frontend -> local listener) and --endpoint-map (endpoint -> local
// dial address), including the errors the CLI turns into exit code 2.
import { describe, expect, it } from 'vitest';
import { canonicalIp, dialAddressFor, localAddressFor, parseBind, parseEndpointMap, parseListenAddress } from '../src/proxy/address.js';

const fe = (address: string, port: number, protocol = 'TCP') => ({ address, port, protocol });

describe('--bind', () => {
  it('serves every frontend on its own address without rules', () => {
    expect(localAddressFor([], fe('10.96.0.10', 80))).toEqual({ address: '10.96.0.10', port: 80 });
  });

  it('maps only what a rule matches, the most specific rule winning', () => {
    const rules = ['10.96.0.10=127.0.0.2', '10.96.0.10:80=127.0.0.3:8000', '10.96.0.10:80/UDP=127.0.0.4:5000', '[fd00::10]:80=[::1]:8080'].map(parseBind);
    expect(localAddressFor(rules, fe('10.96.0.10', 443))).toEqual({ address: '127.0.0.2', port: 443 });
    expect(localAddressFor(rules, fe('10.96.0.10', 80))).toEqual({ address: '127.0.0.3', port: 8000 });
    expect(localAddressFor(rules, fe('10.96.0.10', 80, 'UDP'))).toEqual({ address: '127.0.0.4', port: 5000 });
    expect(localAddressFor(rules, fe('fd00:0::10', 80))).toEqual({ address: '::1', port: 8080 });
    expect(localAddressFor(rules, fe('10.96.0.11', 80))).toBeUndefined();
  });

  it('refuses malformed rules with the reason', () => {
    expect(() => parseBind('10.96.0.10')).toThrow(/FRONTEND=LOCAL/);
    expect(() => parseBind('10.96.0.10=127.0.0.1:80')).toThrow(/needs a frontend port/);
    expect(() => parseBind('10.96.0.10:80/SCTP=127.0.0.1')).toThrow(/TCP or UDP/);
    expect(() => parseBind('fd00::1:80=127.0.0.1')).toThrow(/not an IPv4 address/);
    expect(() => parseBind('10.96.0.10:99999=127.0.0.1:1')).toThrow(/0\.\.65535/);
    expect(() => parseListenAddress('localhost:80', '--http')).toThrow(/--http/);
    expect(() => parseListenAddress('127.0.0.1', '--http')).toThrow(/ADDR:PORT/);
  });
});

describe('--endpoint-map', () => {
  it('maps addresses, address:port pairs and IPv4 CIDRs keeping host bits; first match wins', () => {
    const rules = ['10.244.1.5:8080=127.0.0.9:9000', '10.244.0.0/16=127.244.0.0/16', '[fd00:244::5]=[::1]'].map(parseEndpointMap);
    expect(dialAddressFor(rules, '10.244.1.5', 8080)).toEqual({ address: '127.0.0.9', port: 9000 });
    expect(dialAddressFor(rules, '10.244.1.5', 9100)).toEqual({ address: '127.244.1.5', port: 9100 });
    expect(dialAddressFor(rules, '10.244.255.7', 80)).toEqual({ address: '127.244.255.7', port: 80 });
    expect(dialAddressFor(rules, '10.245.0.1', 80)).toEqual({ address: '10.245.0.1', port: 80 });
    expect(dialAddressFor(rules, 'fd00:244:0::5', 80)).toEqual({ address: '::1', port: 80 });
    expect(dialAddressFor(rules, '192.168.0.1', 80)).toEqual({ address: '192.168.0.1', port: 80 });
  });

  it('refuses malformed rules with the reason', () => {
    expect(() => parseEndpointMap('10.244.0.0/16=127.0.0.0/8')).toThrow(/same prefix length/);
    expect(() => parseEndpointMap('10.244.0.0/16')).toThrow(/ENDPOINT=LOCAL/);
    expect(() => parseEndpointMap('10.244.1.5:80=127.0.0.1')).toThrow(/both sides/);
    expect(() => parseEndpointMap('fd00::/64=::/64')).toThrow(/IPv4/);
  });
});

describe('canonicalIp', () => {
  it('spells addresses one way so keys from manifests, select() and sockets agree', () => {
    expect(canonicalIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(canonicalIp('FD00:0:0::0010')).toBe('fd00::10');
    expect(canonicalIp('10.1.2.3')).toBe('10.1.2.3');
  });
});
