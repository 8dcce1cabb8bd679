// Write tests/fixtures/rfc9421/*.json: requests signed with RFC 9421 HTTP Message Signatures by an
// implementation independent of was_twisted, so the Python verifier is pinned to it.
//
//   node tests/js/make_rfc9421_fixtures.mjs
//
// Signing: http-message-signatures (npm, dhensby) httpbis.signMessage.  Keys: Ed25519 from fixed
// seeds via @digitalbazaar/ed25519-multikey, named as did:key verification methods.  Body digests:
// Content-Digest from Node's crypto, Digest: mh= from @digitalbazaar/http-digest-header.  Ed25519 is
// deterministic and created/expires are fixed, so rerunning rewrites identical files.
//
// Each fixture: method, url, headers (lower-case names, incl. signature-input / signature),
// body_base64, now, has_body, invocation, signer (the DID), key_id, expect ("ok" or "refuse") and,
// for refusals, reason (a short name the Python test maps to the expected error).

import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey'
import { createHeaderValue } from '@digitalbazaar/http-digest-header'
import hms from 'http-message-signatures'

const OUT = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'rfc9421')
const CREATED = 1750000000
const NOW = CREATED + 10
const ORIGIN = 'https://was.example'
const SPACE = `${ORIGIN}/space/z6MkSpace`
const ZCAP = `zcap id="urn:zcap:root:${encodeURIComponent(SPACE)}",action="write"`

async function signerFromSeed (byte) {
  const keyPair = await Ed25519Multikey.generate({ seed: new Uint8Array(32).fill(byte) })
  const did = `did:key:${keyPair.publicKeyMultibase}`
  const signer = keyPair.signer()
  return {
    did,
    keyId: `${did}#${keyPair.publicKeyMultibase}`,
    sign: async data => Buffer.from(await signer.sign({ data: new Uint8Array(data) }))
  }
}

const contentDigest = (alg, body) =>
  `${alg}=:${createHash(alg.replace('-', '')).update(body).digest('base64')}:`

async function sign ({ signer, method, url, headers, fields, keyId, alg = 'ed25519', params, expires, label }) {
  const config = {
    key: { id: keyId ?? signer.keyId, alg, sign: signer.sign },
    fields,
    paramValues: {
      created: new Date(CREATED * 1000),
      expires: new Date((expires ?? CREATED + 300) * 1000)
    }
  }
  if (params) config.params = params
  if (label) config.name = label
  return hms.httpbis.signMessage(config, { method, url, headers })
}

function fixture (name, description, { method, url, signed, body, signer, invocation = false, expect = 'ok', reason, keyId }) {
  const headers = Object.fromEntries(Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), v]))
  return {
    name,
    description,
    method,
    url,
    headers,
    body_base64: Buffer.from(body).toString('base64'),
    now: NOW,
    has_body: body.length > 0,
    invocation,
    signer: signer.did,
    key_id: keyId ?? signer.keyId,
    expect,
    ...(reason ? { reason } : {})
  }
}

const alice = await signerFromSeed(0x01)
const bob = await signerFromSeed(0x02)
const json = Buffer.from('{"name":"doc1","n":1}')
const binary = Buffer.from(Uint8Array.from({ length: 300 }, (_, i) => (i * 7) % 256))
const empty = Buffer.alloc(0)
const out = []

async function add (name, description, { signer = alice, method, url, headers = {}, body = empty, fields, invocation, expect, reason, ...rest }) {
  const signed = await sign({ signer, method, url, headers, fields, ...rest })
  out.push(fixture(name, description, { method, url, signed, body, signer, invocation, expect, reason, keyId: rest.keyId }))
}

await add('get-target-uri', 'GET covering @method @target-uri (URL has a query)', {
  method: 'GET', url: `${SPACE}/?limit=5`, headers: { accept: 'application/json' }, fields: ['@method', '@target-uri']
})
await add('put-path-sha256', 'PUT covering @method @path @authority content-type content-digest (sha-256), non-default port', {
  method: 'PUT',
  url: 'https://was.example:8443/space/z6MkSpace/doc1',
  headers: { 'content-type': 'application/json', 'content-digest': contentDigest('sha-256', json) },
  body: json,
  fields: ['@method', '@path', '@authority', 'content-type', 'content-digest']
})
await add('put-path-sha512', 'PUT of a binary body, Content-Digest sha-512, second signer', {
  signer: bob,
  method: 'PUT',
  url: `${SPACE}/blob`,
  headers: { 'content-type': 'application/octet-stream', 'content-digest': contentDigest('sha-512', binary) },
  body: binary,
  fields: ['@method', '@path', '@authority', 'content-type', 'content-digest']
})
await add('invocation', 'POST with Capability-Invocation covered, plus @authority and content-digest', {
  method: 'POST',
  url: `${SPACE}/`,
  headers: {
    'capability-invocation': ZCAP,
    'content-type': 'application/json',
    'content-digest': contentDigest('sha-256', json)
  },
  body: json,
  invocation: true,
  fields: ['@method', '@target-uri', '@authority', 'capability-invocation', 'content-type', 'content-digest']
})
await add('path-query-no-alg', 'GET covering @method @path @query, no alg parameter', {
  method: 'GET', url: `${SPACE}/?a=1&b=two`, fields: ['@method', '@path', '@query'], params: ['keyid', 'created', 'expires']
})
await add('put-digest-mh', 'PUT whose body is bound by the WAS Digest: mh= header instead of Content-Digest', {
  method: 'PUT',
  url: `${SPACE}/doc2`,
  headers: { 'content-type': 'application/json', digest: await createHeaderValue({ data: new Uint8Array(json), useMultihash: true }) },
  body: json,
  fields: ['@method', '@target-uri', 'content-type', 'digest']
})

// Validly signed, but refused by policy.
await add('bad-alg', 'alg="hmac-sha256" (the bytes are still an Ed25519 signature)', {
  method: 'GET', url: `${SPACE}/x`, fields: ['@method', '@target-uri'], alg: 'hmac-sha256', expect: 'refuse', reason: 'alg'
})
await add('body-digest-not-covered', 'PUT with a body and a Content-Digest header the signature does not cover', {
  method: 'PUT',
  url: `${SPACE}/doc1`,
  headers: { 'content-type': 'application/json', 'content-digest': contentDigest('sha-256', json) },
  body: json,
  fields: ['@method', '@target-uri', 'content-type'],
  expect: 'refuse',
  reason: 'digest-coverage'
})
await add('long-lifetime', 'expires two hours after created', {
  method: 'GET', url: `${SPACE}/x`, fields: ['@method', '@target-uri'], expires: CREATED + 7200, expect: 'refuse', reason: 'lifetime'
})
await add('non-did-key', 'keyid is an https URL, not a did:key', {
  method: 'GET', url: `${SPACE}/x`, fields: ['@method', '@target-uri'], keyId: 'https://was.example/keys/1', expect: 'refuse', reason: 'keyid'
})
await add('path-without-query', 'URL has a query but only @path is covered', {
  method: 'GET', url: `${SPACE}/?limit=5`, fields: ['@method', '@path'], expect: 'refuse', reason: 'query'
})
await add('no-method', '@method not covered', {
  method: 'GET', url: `${SPACE}/x`, fields: ['@target-uri'], expect: 'refuse', reason: 'method'
})
await add('invocation-not-covered', 'Capability-Invocation present but not covered', {
  method: 'GET',
  url: `${SPACE}/x`,
  headers: { 'capability-invocation': ZCAP },
  fields: ['@method', '@target-uri', '@authority'],
  invocation: true,
  expect: 'refuse',
  reason: 'capability'
})
{
  // Two signatures: sign, then sign the result again (the library labels them sig and sig0).
  const url = `${SPACE}/x`
  const first = await sign({ signer: alice, method: 'GET', url, headers: {}, fields: ['@method', '@target-uri'] })
  const second = await sign({ signer: bob, method: 'GET', url, headers: first.headers, fields: ['@method', '@target-uri'] })
  out.push(fixture('two-signatures', 'two labels (sig, sig0) from two signers', {
    method: 'GET', url, signed: second, body: empty, signer: alice, expect: 'refuse', reason: 'labels'
  }))
}

mkdirSync(OUT, { recursive: true })
for (const f of out) {
  writeFileSync(join(OUT, `${f.name}.json`), JSON.stringify(f, null, 2) + '\n')
  console.log(f.name, f.headers['signature-input'])
}
