import { expect } from 'vitest';
import { GatewayError } from '../../src/errors/index.js';

/** Awaits `promise`, expecting it to reject with a GatewayError, and returns that error. */
export async function failure(promise: Promise<unknown>): Promise<GatewayError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a GatewayError');
}
