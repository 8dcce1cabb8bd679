// Regenerate tests/fixtures/zcap/*.json: real zCap delegations made by Digital Bazaar's libraries.
//
//   node tests/js/make_zcap_fixtures.mjs          (from the repository root)
//
// Keys come from fixed seeds, so DIDs are stable; ids (urn:uuid) and timestamps change on every run.
// Each case records how Digital Bazaar's own verifier (@digitalbazaar/zcap CapabilityDelegation with
// jsonld-signatures) judges it, so the Python verifier is pinned against an independent implementation.
// Cases ezcap refuses to make (broader action, later expiry, ...) are signed here with the same suite
// and CapabilityDelegation purpose, with the purpose's local checks switched off.
// Nothing here touches the network: every document loader below is local.

import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {gunzipSync} from 'node:zlib'

import {ZcapClient} from '@digitalbazaar/ezcap'
import {Ed25519Signature2020} from '@digitalbazaar/ed25519-signature-2020'
import {Ed25519VerificationKey2020} from '@digitalbazaar/ed25519-verification-key-2020'
import {signCapabilityInvocation} from '@digitalbazaar/http-signature-zcap-invoke'
import {CapabilityDelegation, constants as zcapConstants, createRootCapability} from '@digitalbazaar/zcap'
// jsonld-signatures is the copy ezcap and zcap use (hoisted, not a direct dependency): hand-signing
// and verifying must go through the same instance.
import jsigs from 'jsonld-signatures'
import zcapContext from 'zcap-context'
import ed25519Context from 'ed25519-signature-2020-context'

const HERE = dirname(fileURLToPath(import.meta.url))
const OUT = join(HERE, '..', 'fixtures', 'zcap')
const ZCAP_URL = zcapConstants.ZCAP_CONTEXT_URL
const ED_URL = Ed25519Signature2020.CONTEXT_URL
const SPACE = 'https://was.example/space/s1'
const ROOT_ID = `urn:zcap:root:${encodeURIComponent(SPACE)}`
const MINUTE = 60 * 1000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const NOW = Date.now()
const iso = ms => new Date(ms).toISOString().slice(0, -5) + 'Z'

// ------------------------------------------------------------------ keys

const keys = {}
async function key (name) {
  if (keys[name]) return keys[name]
  const seed = createHash('sha256').update(`was-twisted zcap fixture key: ${name}`).digest()
  const generated = await Ed25519VerificationKey2020.generate({seed: new Uint8Array(seed)})
  const did = `did:key:${generated.fingerprint()}`
  const pair = new Ed25519VerificationKey2020({
    publicKeyMultibase: generated.publicKeyMultibase,
    privateKeyMultibase: generated.privateKeyMultibase,
    controller: did
  })
  keys[name] = {name, pair, did, keyId: pair.id, seedHex: seed.toString('hex')}
  return keys[name]
}

function client (k) {
  return new ZcapClient({SuiteClass: Ed25519Signature2020, delegationSigner: k.pair.signer()})
}

// ------------------------------------------------------------------ local document loader (JS verifier)

const rootControllers = new Map([[ROOT_ID, 'root']])

async function documentLoader (url) {
  if (url === ZCAP_URL) return {contextUrl: null, documentUrl: url, document: zcapContext.CONTEXT, tag: 'static'}
  if (url === ED_URL) return {contextUrl: null, documentUrl: url, document: ed25519Context.CONTEXT, tag: 'static'}
  if (url.startsWith('did:key:')) {
    const [did, fragment] = url.split('#')
    const fingerprint = did.slice('did:key:'.length)
    if (fragment !== undefined && fragment !== fingerprint) throw new Error(`bad did:key fragment: ${url}`)
    const pair = Ed25519VerificationKey2020.fromFingerprint({fingerprint})
    pair.controller = did
    pair.id = `${did}#${fingerprint}`
    const keyDocument = await pair.export({publicKey: true, includeContext: true})
    if (fragment !== undefined) return {contextUrl: null, documentUrl: url, document: keyDocument}
    // the DID document: the one key, authorized for invocation and delegation
    const {'@context': _, ...verificationMethod} = keyDocument
    const document = {
      '@context': ['https://www.w3.org/ns/did/v1', ED_URL],
      id: did,
      verificationMethod: [verificationMethod],
      capabilityDelegation: [pair.id],
      capabilityInvocation: [pair.id]
    }
    return {contextUrl: null, documentUrl: url, document}
  }
  if (rootControllers.has(url)) {
    const target = decodeURIComponent(url.slice(zcapConstants.ZCAP_ROOT_PREFIX.length))
    const controller = (await key(rootControllers.get(url))).did
    return {contextUrl: null, documentUrl: url, document: createRootCapability({controller, invocationTarget: target})}
  }
  throw new Error(`fixture document loader refuses ${url}`)
}

/** the innermost error messages (jsigs wraps them in "Verification error(s).") */
function messages (error) {
  if (!error) return []
  const inner = error.errors ?? (error.cause ? [error.cause] : [])
  const found = inner.flatMap(messages)
  return found.length ? found : [error.message ?? String(error)]
}

/** Digital Bazaar's verdict on a delegated zcap, with target attenuation on as the WAS server needs */
async function jsVerdict (capability, {date = NOW} = {}) {
  const result = await jsigs.verify(structuredClone(capability), {
    suite: new Ed25519Signature2020(),
    purpose: new CapabilityDelegation({
      expectedRootCapability: ROOT_ID,
      allowTargetAttenuation: true,
      date: new Date(date),
      maxClockSkew: 300,
      suite: new Ed25519Signature2020()
    }),
    documentLoader
  })
  if (result.verified) return {verified: true, error: null}
  return {verified: false, error: messages(result.error).join(' | ')}
}

// ------------------------------------------------------------------ delegation helpers

/** delegate with ezcap, exactly as a WAS client would */
async function delegate (signerName, {parent = ROOT_ID, to, target, actions, expires, now = NOW}) {
  const signer = await key(signerName)
  const options = {capability: parent, controller: (await key(to)).did, expires: iso(expires), now}
  if (target !== undefined) options.invocationTarget = target
  if (actions !== undefined) options.allowedActions = actions
  return client(signer).delegate(options)
}

/** sign a zcap ezcap refuses to make, with the same suite and purpose but no local checks */
async function handSign (signerName, {parent = ROOT_ID, to, target, actions, expires, created = NOW}) {
  const signer = await key(signerName)
  const zcap = {
    '@context': ZCAP_URL,
    id: `urn:uuid:${crypto.randomUUID()}`,
    controller: (await key(to)).did,
    parentCapability: typeof parent === 'string' ? parent : parent.id,
    invocationTarget: target ?? parent.invocationTarget,
    expires: iso(expires)
  }
  if (actions !== undefined) zcap.allowedAction = actions
  return jsigs.sign(zcap, {
    documentLoader,
    suite: new Ed25519Signature2020({date: new Date(created), signer: signer.pair.signer()}),
    purpose: new CapabilityDelegation({parentCapability: parent, _skipLocalValidationForTesting: true})
  })
}

/** what ezcap says when asked to make an invalid delegation (null if it made one) */
async function ezcapRefusal (signerName, options) {
  try {
    await delegate(signerName, options)
    return null
  } catch (e) {
    return e.message
  }
}

/** the Capability-Invocation header exactly as http-signature-zcap-invoke makes it */
async function invocationHeaders ({capability, url, method, action, json, signerName}) {
  const signer = await key(signerName)
  const invocationSigner = signer.pair.signer()
  return signCapabilityInvocation({
    url, method, headers: {}, json, capability, capabilityAction: action, invocationSigner,
    created: Math.floor(NOW / 1000)
  })
}

function encodedOf (header) {
  const match = /capability="([^"]*)"/.exec(header)
  if (!match) throw new Error(`no capability= in ${header}`)
  const decoded = JSON.parse(gunzipSync(Buffer.from(match[1], 'base64url')).toString('utf8'))
  return {encoded: match[1], decoded}
}

// ------------------------------------------------------------------ the cases

const cases = {}
async function addCase (name, capability, {expect, why, ezcapRefused = null, jsDate}) {
  const tail = capability
  const headers = await invocationHeaders({
    capability: tail, url: tail.invocationTarget, method: 'GET', action: 'GET', signerName: 'alice'
  })
  const {encoded, decoded} = encodedOf(headers['capability-invocation'])
  if (JSON.stringify(decoded) !== JSON.stringify(tail)) throw new Error(`${name}: header does not round-trip`)
  cases[name] = {
    why,
    expect,
    ezcap_refused: ezcapRefused,
    js: await jsVerdict(tail, {date: jsDate}),
    header: headers['capability-invocation'],
    encoded,
    capability: tail
  }
}

const later = NOW + DAY
const things = `${SPACE}/things`
const item = `${things}/item1`

// chains of 1, 2 and 3: the space root delegated to a resource, a container, the space
const c1 = await delegate('root', {to: 'alice', target: item, actions: ['GET', 'PUT'], expires: later})
await addCase('chain1_resource', c1, {expect: 'valid', why: 'space root -> alice, narrowed to one resource'})

const c2a = await delegate('root', {to: 'alice', target: things, actions: ['GET', 'PUT'], expires: later})
const c2 = await delegate('alice', {parent: c2a, to: 'bob', target: item, actions: ['GET'], expires: later - HOUR})
await addCase('chain2_container', c2, {expect: 'valid', why: 'root -> alice (container) -> bob (resource, GET)'})

const c3a = await delegate('root', {to: 'alice', expires: later, target: SPACE})
const c3b = await delegate('alice', {parent: c3a, to: 'bob', target: things, actions: ['GET', 'PUT'], expires: later})
const c3 = await delegate('bob', {parent: c3b, to: 'carol', target: item, actions: 'GET', expires: later - HOUR})
await addCase('chain3_space', c3, {
  expect: 'valid', why: 'root -> alice (whole space, all actions) -> bob (container) -> carol (resource, "GET")'
})
await addCase('chain3_middle', c3b, {expect: 'valid', why: 'the middle link of chain3 on its own'})

// a trailing-slash container target covers what lies under it (our rule; the JS verifier only accepts
// target + "/" or target + "?" and so refuses this one)
const slashA = await delegate('root', {to: 'alice', target: `${things}/`, actions: ['GET'], expires: later})
const slash = await delegate('alice', {parent: slashA, to: 'bob', target: item, expires: later})
await addCase('trailing_slash_container', slash, {
  expect: 'valid', why: 'container target ending in "/" delegated to a resource under it'
})

// chains of exactly 10 (valid) and 11 (too long), counting root and tail
let link = await delegate('root', {to: 'k1', target: SPACE, actions: ['GET', 'PUT'], expires: later})
for (let i = 2; i <= 9; i++) {
  link = await delegate(`k${i - 1}`, {parent: link, to: `k${i}`, expires: later})
}
await addCase('chain10', link, {expect: 'valid', why: 'root + 9 delegations = 10 capabilities, the maximum'})
const tooLongRefusal = await ezcapRefusal('k9', {parent: link, to: 'k10', expires: later})
const tooLong = tooLongRefusal === null
  ? await delegate('k9', {parent: link, to: 'k10', expires: later})
  : await handSign('k9', {parent: link, to: 'k10', expires: later})
await addCase('chain11', tooLong, {
  expect: 'too_long', ezcapRefused: tooLongRefusal, why: 'root + 10 delegations = 11 capabilities'
})

// GET-only delegated, then re-delegated with PUT
const getOnly = await delegate('root', {to: 'alice', target: things, actions: ['GET'], expires: later})
const broaderOptions = {parent: getOnly, to: 'bob', target: item, actions: ['GET', 'PUT'], expires: later}
await addCase('broader_action', await handSign('alice', broaderOptions), {
  expect: 'broader_action', ezcapRefused: await ezcapRefusal('alice', broaderOptions),
  why: 'alice holds GET only and delegates GET+PUT'
})
const noActionOptions = {parent: getOnly, to: 'bob', target: item, expires: later}
await addCase('dropped_action_restriction', await handSign('alice', noActionOptions), {
  expect: 'broader_action', why: 'alice holds GET only and delegates without allowedAction (all actions)'
})

// a target outside the parent's, and one that is only a string prefix of it
const outside = await delegate('alice', {parent: c2a, to: 'bob', target: `${SPACE}/other/item1`, expires: later})
await addCase('target_outside_parent', outside, {expect: 'target', why: 'parent is /things, child /other/item1'})
const prefix = await delegate('alice', {parent: c2a, to: 'bob', target: `${things}X/item1`, expires: later})
await addCase('target_string_prefix', prefix, {expect: 'target', why: 'parent is /things, child /thingsX/item1'})
const rootOutside = await delegate('root', {to: 'alice', target: 'https://was.example/space/s2', expires: later})
await addCase('root_target_outside', rootOutside, {expect: 'target', why: 'root of space s1 delegated to space s2'})

// expires after the parent's
const shortParent = await delegate('root', {to: 'alice', target: things, expires: NOW + HOUR})
const laterOptions = {parent: shortParent, to: 'bob', target: item, expires: NOW + 2 * HOUR}
await addCase('expires_after_parent', await handSign('alice', laterOptions), {
  expect: 'expires', ezcapRefused: await ezcapRefusal('alice', laterOptions),
  why: 'parent expires in 1 h, child in 2 h'
})

// created before the parent's (ezcap moves the date forward itself, so sign by hand)
const createdEarly = await handSign('alice', {
  parent: c2a, to: 'bob', target: item, actions: ['GET'], expires: later, created: NOW - DAY
})
await addCase('created_before_parent', createdEarly, {
  expect: 'created', why: "child's proof.created is a day before its parent's"
})

// an expired delegation (made two days ago, expired yesterday); verify passes, check_time fails
const expired = await delegate('root', {to: 'alice', target: item, expires: NOW - DAY, now: NOW - 2 * DAY})
await addCase('expired', expired, {expect: 'expired', why: 'made 2 days before now, expired 1 day before now'})
const expiredParentChild = await delegate('root', {to: 'alice', target: things, expires: NOW - DAY, now: NOW - 2 * DAY})
const underExpired = await delegate('alice', {
  parent: expiredParentChild, to: 'bob', target: item, expires: NOW - DAY, now: NOW - 2 * DAY
})
await addCase('expired_parent', underExpired, {expect: 'expired', why: 'both links expired a day ago'})
// a delegation dated in the future (clock well ahead of ours)
const future = await delegate('root', {to: 'alice', target: item, expires: NOW + 2 * DAY, now: NOW + DAY})
await addCase('created_in_future', future, {expect: 'not_yet', why: 'proof.created is a day after now'})

// tampered after signing: the tail's action list, and a field inside the embedded parent
const tampered = structuredClone(c1)
tampered.allowedAction = ['GET', 'PUT', 'DELETE']
await addCase('tampered', tampered, {expect: 'signature', why: 'chain1 with DELETE added after signing'})
const tamperedParent = structuredClone(c2)
tamperedParent.proof.capabilityChain[1].invocationTarget = SPACE
await addCase('tampered_parent', tamperedParent, {
  expect: 'signature', why: "chain2 with the embedded parent's target widened to the space"
})
const tamperedProof = structuredClone(c1)
tamperedProof.proof.created = iso(NOW - HOUR)
await addCase('tampered_proof', tamperedProof, {expect: 'signature', why: 'chain1 with proof.created changed'})

// delegated from the root by a key that is not the root controller (lead refuses it by delegator)
const notController = await delegate('mallory', {to: 'bob', target: item, expires: later})
await addCase('root_not_controller', notController, {
  expect: 'valid_wrong_delegator', why: 'mallory signs a delegation of the space root'
})
// delegated from alice's zcap by a key that is not alice
const wrongDelegator = await delegate('mallory', {parent: c2a, to: 'bob', target: item, expires: later})
await addCase('wrong_delegator', wrongDelegator, {
  expect: 'delegator', why: "mallory signs a delegation of alice's zcap"
})

// ------------------------------------------------------------------ header values

const headers = {
  root_get: {
    url: item,
    method: 'GET',
    action: 'GET',
    headers: await invocationHeaders({url: item, method: 'GET', action: 'GET', signerName: 'root'})
  },
  root_object_get: {
    url: SPACE,
    method: 'GET',
    action: 'GET',
    note: 'a root zcap passed as an object is sent by id',
    headers: await invocationHeaders({
      capability: createRootCapability({controller: (await key('root')).did, invocationTarget: SPACE}),
      url: SPACE, method: 'GET', action: 'GET', signerName: 'root'
    })
  },
  delegated_put: {
    url: item,
    method: 'PUT',
    action: 'PUT',
    json: {message: 'hi'},
    capability: c2a,
    headers: await invocationHeaders({
      capability: c2a, url: item, method: 'PUT', action: 'PUT', json: {message: 'hi'}, signerName: 'alice'
    })
  }
}

// ------------------------------------------------------------------ encodeURIComponent samples

const uriSamples = [
  SPACE,
  `${item}?v=1&x=a b`,
  'https://was.example/space/s1/caf\u00e9/\u{1F600}',
  "https://was.example/space/s1/!*'()~-_.;,/?:@&=+$#",
  'https://was.example:8443/space/s1/%2F%41'
].map(url => ({url, root_id: `urn:zcap:root:${encodeURIComponent(url)}`}))

// ------------------------------------------------------------------ write

const sha256File = path => createHash('sha256').update(readFileSync(path)).digest('hex')
const nm = join(HERE, 'node_modules')
const meta = {
  generated_by: 'tests/js/make_zcap_fixtures.mjs',
  now_ms: NOW,
  now: new Date(NOW).toISOString(),
  space: SPACE,
  root_id: ROOT_ID,
  root_controller: 'root',
  libraries: Object.fromEntries([
    '@digitalbazaar/ezcap', '@digitalbazaar/zcap', '@digitalbazaar/ed25519-signature-2020',
    '@digitalbazaar/ed25519-verification-key-2020', '@digitalbazaar/http-signature-zcap-invoke',
    'jsonld-signatures', 'jsonld', 'rdf-canonize', 'zcap-context', 'ed25519-signature-2020-context'
  ].map(name => [name, JSON.parse(readFileSync(join(nm, name, 'package.json'), 'utf8')).version])),
  context_sha256: {
    [ZCAP_URL]: sha256File(join(nm, 'zcap-context', 'contexts', 'zcap-v1.jsonld')),
    [ED_URL]: sha256File(join(nm, 'ed25519-signature-2020-context', 'contexts', 'ed25519-signature-2020-v1.jsonld'))
  },
  keys: Object.fromEntries(Object.values(keys).map(k => [k.name, {seed_hex: k.seedHex, did: k.did, key_id: k.keyId}]))
}

mkdirSync(OUT, {recursive: true})
const write = (name, value) => writeFileSync(join(OUT, name), JSON.stringify(value, null, 2) + '\n')
write('meta.json', meta)
write('cases.json', cases)
write('headers.json', headers)
write('uri_component.json', uriSamples)

for (const [name, c] of Object.entries(cases)) {
  console.log(`${name.padEnd(28)} expect=${c.expect.padEnd(22)} js=${c.js.verified} ${c.js.error ?? ''}`)
}
