// Write tests/fixtures/digest/*.json: digest header values for fixed bodies, made by
// implementations independent of was_twisted, so the Python checker is pinned to them.
//
//   node tests/js/make_digest_fixtures.mjs
//
// `digest` (Digest: mh=, sha2-256 multihash) comes from @digitalbazaar/http-digest-header,
// the library the Digital Bazaar zCap clients use.  It supports only SHA-256, so the
// sha2-512 multihash and the RFC 9530 Content-Digest values are built here from Node's
// crypto (multihash framing 0x13 0x40 || digest, base64url without padding).
//
// A body is base64(body_base64) repeated `repeat` times (the large one crosses 64 KiB).

import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHeaderValue } from '@digitalbazaar/http-digest-header'

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'digest')

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i)
const cases = [
  { name: 'spec-vector', body: new TextEncoder().encode('{"message":"hi"}'), repeat: 1 },
  { name: 'empty', body: new Uint8Array(0), repeat: 1 },
  { name: 'binary-all-bytes', body: allBytes, repeat: 1 },
  { name: 'utf8-text', body: new TextEncoder().encode('héllo wörld ✓ 日本\n'), repeat: 1 },
  // 256 * 300 = 76800 bytes: more than one 64 KiB read
  { name: 'large-binary', body: allBytes, repeat: 300 }
]

function repeatBytes (bytes, times) {
  const out = new Uint8Array(bytes.length * times)
  for (let i = 0; i < times; i++) out.set(bytes, i * bytes.length)
  return out
}

function sha512Multihash (data) {
  const digest = createHash('sha512').update(data).digest()
  return 'mh=u' + Buffer.concat([Buffer.from([0x13, 0x40]), digest]).toString('base64url')
}

function contentDigest (data) {
  const b64 = alg => createHash(alg).update(data).digest('base64')
  return `sha-256=:${b64('sha256')}:, sha-512=:${b64('sha512')}:`
}

mkdirSync(OUT, { recursive: true })
for (const { name, body, repeat } of cases) {
  const data = repeatBytes(body, repeat)
  const fixture = {
    name,
    body_base64: Buffer.from(body).toString('base64'),
    repeat,
    length: data.length,
    digest: await createHeaderValue({ data: Uint8Array.from(data), useMultihash: true }),
    digest_sha512: sha512Multihash(data),
    content_digest: contentDigest(data),
    sha256_hex: createHash('sha256').update(data).digest('hex')
  }
  writeFileSync(join(OUT, `${name}.json`), JSON.stringify(fixture, null, 2) + '\n')
  console.log(name, fixture.digest)
}
