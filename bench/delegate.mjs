// Delegations for bench/zcap_bench.py, made by Digital Bazaar's own libraries (tests/js/node_modules).
//
//   node bench/delegate.mjs < request.json > delegations.json
//
// request: {"target": "<space URL>", "seeds": {"a": hex, "b": hex, "c": hex}, "fresh": N, "expires_s": S}
// The keys are did:key Ed25519VerificationKey2020 keys generated from the 32-byte seeds, so the caller
// holds the same private keys. A (the space's controller) delegates GET on the target to B, B delegates
// it to C: "chain" is that tail capability (its parent embedded), and "fresh" holds N more such chains,
// each made of two new delegations, for measuring uncached verification. Nothing touches the network.
//
// ESM ignores NODE_PATH, so the libraries are resolved from tests/js/ explicitly: this works from any cwd.

import {readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const HERE = dirname(fileURLToPath(import.meta.url))
const TESTS_JS = join(HERE, '..', 'tests', 'js')
const requireFromTests = createRequire(join(TESTS_JS, 'package.json'))
const load = async name => import(pathToFileURL(requireFromTests.resolve(name)).href)
const version = name => JSON.parse(readFileSync(join(TESTS_JS, 'node_modules', name, 'package.json'), 'utf8')).version

const {ZcapClient} = await load('@digitalbazaar/ezcap')
const {Ed25519Signature2020} = await load('@digitalbazaar/ed25519-signature-2020')
const {Ed25519VerificationKey2020} = await load('@digitalbazaar/ed25519-verification-key-2020')

const LIBRARIES = [
  '@digitalbazaar/ezcap',
  '@digitalbazaar/ed25519-signature-2020',
  '@digitalbazaar/ed25519-verification-key-2020'
]

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

/** a did:key key pair from a hex seed, with the id and controller a DID resolver would give it */
async function keyFromSeed (hex) {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error('each seed must be 64 hex digits')
  const generated = await Ed25519VerificationKey2020.generate({seed: new Uint8Array(Buffer.from(hex, 'hex'))})
  const did = `did:key:${generated.fingerprint()}`
  const pair = new Ed25519VerificationKey2020({
    publicKeyMultibase: generated.publicKeyMultibase,
    privateKeyMultibase: generated.privateKeyMultibase,
    controller: did
  })
  return {did, keyId: pair.id, client: new ZcapClient({SuiteClass: Ed25519Signature2020, delegationSigner: pair.signer()})}
}

const iso = ms => new Date(ms).toISOString().slice(0, -5) + 'Z'

const request = await readStdin()
const target = request.target
if (typeof target !== 'string' || !/^https?:\/\//.test(target)) throw new Error('target must be an http(s) URL')
const fresh = Number.isInteger(request.fresh) && request.fresh >= 0 ? request.fresh : 0
const expiresMs = Date.now() + 1000 * (request.expires_s ?? 3600)
const rootId = `urn:zcap:root:${encodeURIComponent(target)}`
const a = await keyFromSeed(request.seeds.a)
const b = await keyFromSeed(request.seeds.b)
const c = await keyFromSeed(request.seeds.c)

/** root -> B -> C, GET only on the whole target, as a WAS client would delegate it */
async function chain () {
  const toB = await a.client.delegate({
    capability: rootId, controller: b.did, invocationTarget: target, allowedActions: ['GET'], expires: iso(expiresMs)
  })
  return b.client.delegate({
    capability: toB, controller: c.did, invocationTarget: target, allowedActions: ['GET'], expires: iso(expiresMs - 60000)
  })
}

const started = Date.now()
const tail = await chain()
const batch = []
for (let i = 0; i < fresh; i++) batch.push(await chain())

process.stdout.write(JSON.stringify({
  root_id: rootId,
  keys: Object.fromEntries([['a', a], ['b', b], ['c', c]].map(([n, k]) => [n, {did: k.did, key_id: k.keyId}])),
  chain: tail,
  fresh: batch,
  seconds: (Date.now() - started) / 1000,
  libraries: Object.fromEntries(LIBRARIES.map(name => [name, version(name)]))
}) + '\n')
