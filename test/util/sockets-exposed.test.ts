import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exposedAddress, isLoopbackHost } from '../../src/util/sockets.js';

test('loopback hosts: 127.0.0.0/8, ::1 and IPv4-mapped 127.x; nothing else', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
    assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', 'fe80::1', ''])
    assert.ok(!isLoopbackHost(h), h);
});

test('exposedAddress names the first inet address off the loopback; unix sockets never', () => {
  const unix: { type: string } = { type: 'unix' };
  assert.equal(exposedAddress([unix]), undefined);
  assert.equal(exposedAddress([{ type: 'inet', host: '127.0.0.1', port: '1' }]), undefined);
  assert.equal(exposedAddress([{ type: 'inet', host: '0.0.0.0', port: '4444' }]), '0.0.0.0:4444');
  assert.equal(exposedAddress([{ type: 'inet', host: '::', port: '4444' }]), '[::]:4444');
});
