import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rekeyReasonOf } from '../src/dataplane-events.js';

test('the rekey reason the data plane gives is the one the negotiator counts and logs', () => {
  assert.equal(rekeyReasonOf('counter-soft-limit'), 'counter-soft-limit');
  assert.equal(rekeyReasonOf('counter-limit'), 'counter-limit');
  assert.equal(rekeyReasonOf('no-reply'), 'peer-lost-session');
});
