/**
 * Envelope encryption for secrets at rest (upstream API keys, JWT signing keys).
 *
 * Each record gets its own random 256-bit data key; the record is sealed with AES-256-GCM
 * under that data key, and the data key is sealed (wrapped) under a master key. The sealed
 * form names the master key by its fingerprint, so older master keys can still open old
 * records, and rotating the master key re-wraps only the small data key.
 *
 * Format (text, safe for any column): `pe1.<kid>.<wrapped data key>.<iv>.<ciphertext+tag>`,
 * each part base64url. `context` is bound as additional authenticated data: a sealed value
 * moved to another record (another context) fails to open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { GatewayError } from '../errors/index.js';

export interface MasterKey {
  /** First 16 hex characters of SHA-256 of the key: names the key without revealing it. */
  id: string;
  key: Buffer;
}

export interface MasterKeyRing {
  /** New seals use this key. */
  current: MasterKey;
  /** Every key that may open a seal, the current one included. */
  byId: ReadonlyMap<string, MasterKey>;
}

const VERSION = 'pe1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export function masterKeyFromBytes(key: Buffer): MasterKey {
  if (key.length !== 32) throw new Error('a master key is 32 bytes');
  return { id: createHash('sha256').update(key).digest('hex').slice(0, 16), key };
}

export function keyRing(current: Buffer, previous: Buffer[] = []): MasterKeyRing {
  const cur = masterKeyFromBytes(current);
  const byId = new Map<string, MasterKey>([[cur.id, cur]]);
  for (const old of previous) {
    const k = masterKeyFromBytes(old);
    if (!byId.has(k.id)) byId.set(k.id, k);
  }
  return { current: cur, byId };
}

function gcmSeal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

function gcmOpen(key: Buffer, sealed: Buffer, aad: Buffer): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new Error('sealed value too short');
  const iv = sealed.subarray(0, IV_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
}

const b64 = (b: Buffer) => b.toString('base64url');
const unb64 = (s: string) => Buffer.from(s, 'base64url');

/** Seals `plaintext` for the record named by `context` (e.g. `upstream_key:key_123`). */
export function seal(ring: MasterKeyRing, plaintext: string | Buffer, context: string): string {
  const dataKey = randomBytes(32);
  try {
    const aad = Buffer.from(context, 'utf8');
    const wrapped = gcmSeal(ring.current.key, dataKey, Buffer.concat([Buffer.from('dek:'), aad]));
    const body = gcmSeal(dataKey, Buffer.isBuffer(plaintext) ? plaintext : Buffer.from(plaintext, 'utf8'), aad);
    return [VERSION, ring.current.id, b64(wrapped), b64(body)].join('.');
  } finally {
    dataKey.fill(0);
  }
}

interface Parsed {
  kid: string;
  wrapped: Buffer;
  body: Buffer;
}

function parse(sealed: string): Parsed {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== VERSION) throw new GatewayError('internal', 'A stored secret is not in a known sealed format');
  return { kid: parts[1]!, wrapped: unb64(parts[2]!), body: unb64(parts[3]!) };
}

function unwrap(ring: MasterKeyRing, parsed: Parsed, aad: Buffer): Buffer {
  const master = ring.byId.get(parsed.kid);
  if (!master) {
    throw new GatewayError('internal', `A stored secret was sealed with master key ${parsed.kid}, which is not configured`, {
      reason: 'master_key_missing',
    });
  }
  try {
    return gcmOpen(master.key, parsed.wrapped, Buffer.concat([Buffer.from('dek:'), aad]));
  } catch (err) {
    throw new GatewayError('internal', 'A stored secret failed its integrity check', { reason: 'seal_invalid', cause: err });
  }
}

/** Opens a sealed value; fails if it was tampered with, moved to another context, or its master key is unknown. */
export function open(ring: MasterKeyRing, sealed: string, context: string): Buffer {
  const parsed = parse(sealed);
  const aad = Buffer.from(context, 'utf8');
  const dataKey = unwrap(ring, parsed, aad);
  try {
    return gcmOpen(dataKey, parsed.body, aad);
  } catch (err) {
    throw new GatewayError('internal', 'A stored secret failed its integrity check', { reason: 'seal_invalid', cause: err });
  } finally {
    dataKey.fill(0);
  }
}

/** The master key id a sealed value depends on. */
export function sealedKeyId(sealed: string): string {
  return parse(sealed).kid;
}

/** Re-wraps the data key under the current master key; the sealed body is untouched. */
export function rewrap(ring: MasterKeyRing, sealed: string, context: string): string {
  const parsed = parse(sealed);
  if (parsed.kid === ring.current.id) return sealed;
  const aad = Buffer.from(context, 'utf8');
  const dataKey = unwrap(ring, parsed, aad);
  try {
    const wrapped = gcmSeal(ring.current.key, dataKey, Buffer.concat([Buffer.from('dek:'), aad]));
    return [VERSION, ring.current.id, b64(wrapped), b64(parsed.body)].join('.');
  } finally {
    dataKey.fill(0);
  }
}
