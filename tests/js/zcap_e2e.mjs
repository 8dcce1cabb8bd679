// Drive a running was-twisted server with Digital Bazaar's zCap libraries: delegation, invocation, revocation.
//
//   node tests/js/zcap_e2e.mjs http://127.0.0.1:PORT
//
// Delegations are made by @digitalbazaar/ezcap (ZcapClient.delegate, Ed25519Signature2020, did:key keys from
// @digitalbazaar/ed25519-verification-key-2020); invocations are signed by @digitalbazaar/http-signature-zcap-invoke
// (through ZcapClient.request where ezcap allows the request, else signCapabilityInvocation + fetch: ezcap refuses
// http:// root ids and a URL outside the capability's target client-side, which is exactly what a denial check needs).
//
// Prints one JSON line per check, {"check", "ok", ...details}, and exits 1 if any check failed (2 on an unexpected
// error).  Every request goes through a fetch wrapper with a 10 s timeout that records what was sent and answered,
// so a failing check shows the exact request and response.

import {ZcapClient} from '@digitalbazaar/ezcap'
import {Ed25519Signature2020} from '@digitalbazaar/ed25519-signature-2020'
import {Ed25519VerificationKey2020} from '@digitalbazaar/ed25519-verification-key-2020'
import {signCapabilityInvocation} from '@digitalbazaar/http-signature-zcap-invoke'
import {CapabilityDelegation} from '@digitalbazaar/zcap'
// the copy ezcap signs with (hoisted): hand-signing must use the same instance
import jsigs from 'jsonld-signatures'

const TIMEOUT_MS = 10_000
const HOUR = 3600 * 1000
const WRITTEN = [201, 204] // a resource PUT answers 204 (201 is also a success)
const NOT_FOUND_TYPE = 'https://wallet.storage/spec#not-found'
const BAD_AUTH_TYPE = 'https://wallet.storage/spec#invalid-authorization-header'
const rootOf = url => `urn:zcap:root:${encodeURIComponent(url)}`
const iso = ms => new Date(ms).toISOString().slice(0, -5) + 'Z'

// ---------------------------------------------------------------- fetch log

const sent = []
const realFetch = globalThis.fetch
globalThis.fetch = async function recordingFetch (input, init = {}) {
  const request = input instanceof Request ? input : null
  const url = request ? request.url : String(input)
  const headers = new Headers(init.headers ?? request?.headers ?? {})
  const invocation = headers.get('capability-invocation')
  const entry = {
    method: init.method ?? request?.method ?? 'GET',
    url,
    keyId: /keyId="([^"]*)"/.exec(headers.get('authorization') ?? '')?.[1] ?? null,
    invocation: invocation && invocation.length > 160 ? invocation.slice(0, 160) + '...' : invocation,
    digest: headers.get('digest'),
    contentType: headers.get('content-type')
  }
  sent.push(entry)
  const response = await realFetch(input, {...init, signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS)})
  entry.status = response.status
  entry.responseType = response.headers.get('content-type')
  const text = await response.clone().text()
  entry.responseBody = text.length > 600 ? text.slice(0, 600) + '...' : text
  entry.fullBody = text
  return response
}

/** the request log since `mark`, without the full bodies (kept for comparisons) */
function since (mark) {
  return sent.slice(mark).map(({fullBody, ...rest}) => rest)
}

// ---------------------------------------------------------------- keys and requests

/** a did:key Ed25519 key, with an ezcap client that invokes and delegates with it */
async function makeKey (name) {
  const generated = await Ed25519VerificationKey2020.generate()
  const did = `did:key:${generated.fingerprint()}`
  const pair = new Ed25519VerificationKey2020({
    publicKeyMultibase: generated.publicKeyMultibase,
    privateKeyMultibase: generated.privateKeyMultibase,
    controller: did
  })
  const signer = pair.signer()
  const client = new ZcapClient({
    SuiteClass: Ed25519Signature2020, invocationSigner: signer, delegationSigner: signer
  })
  return {name, did, keyId: pair.id, signer, client}
}

/** ZcapClient.request; ezcap throws on non-2xx, so return the logged entry whatever the status */
async function ez (key, options) {
  const mark = sent.length
  try {
    await key.client.request(options)
  } catch (error) {
    if (sent.length === mark) throw error // refused before sending: a driver bug
  }
  return sent.at(-1)
}

/** signCapabilityInvocation + fetch; `sendJson`/`sendBody` replace what was signed */
async function invoke (key, {url, method, capability, action, json, body, contentType, sendJson, sendBody}) {
  const headers = contentType ? {'content-type': contentType} : {}
  const signed = await signCapabilityInvocation({
    url, method, headers, json, body, capability, capabilityAction: action, invocationSigner: key.signer
  })
  let payload
  if (sendBody !== undefined) payload = sendBody
  else if (sendJson !== undefined) payload = JSON.stringify(sendJson)
  else if (json !== undefined) payload = JSON.stringify(json)
  else payload = body
  const {host, ...rest} = signed // fetch sets Host itself (same value)
  await fetch(url, {method, headers: rest, body: payload})
  return sent.at(-1)
}

/** an unsigned request */
async function anonymous (url, method = 'GET') {
  await fetch(url, {method})
  return sent.at(-1)
}

// ---------------------------------------------------------------- checks

const results = []

function report (check, ok, details = {}) {
  results.push(Boolean(ok))
  process.stdout.write(JSON.stringify({check, ok: Boolean(ok), ...details}) + '\n')
}

/** run `fn` (which makes requests); pass when the last response has `status` (or one of them) and `test(entry)` */
async function expect (check, status, fn, test = () => true, extra = {}) {
  const mark = sent.length
  const entry = await fn()
  const ok = [status].flat().includes(entry.status) && test(entry)
  report(check, ok, {expected: status, status: entry.status, requests: since(mark), ...extra})
  return entry
}

let absentBody = null

/** the denial must look exactly like an absent target: 404, problem+json not-found, the same body */
function isAbsent (entry) {
  if (entry.status !== 404 || !(entry.responseType ?? '').startsWith('application/problem+json')) return false
  try {
    if (JSON.parse(entry.fullBody).type !== NOT_FOUND_TYPE) return false
  } catch {
    return false
  }
  return absentBody !== null && entry.fullBody === absentBody
}

async function expectAbsent (check, fn, extra = {}) {
  const mark = sent.length
  const entry = await fn()
  report(check, isAbsent(entry), {
    expected: '404 not-found, body identical to an absent resource', status: entry.status,
    requests: since(mark), ...extra
  })
  return entry
}

const jsonOf = entry => {
  try {
    return JSON.parse(entry.fullBody)
  } catch {
    return undefined
  }
}

/** the stored bytes of `url` as the controller reads them (root zCap of the URL) */
async function controllerRead (a, url) {
  return ez(a, {url, method: 'GET', action: 'GET'})
}

async function main (base) {
  const [A, B, C, D] = await Promise.all(['A', 'B', 'C', 'D'].map(makeKey))
  const spaceId = `zcap-e2e-${crypto.randomUUID()}`
  const S = `${base}/space/${spaceId}`
  const docs = `${S}/docs`
  const one = `${docs}/one.json`
  const two = `${docs}/two.json`
  const onex = `${docs}/one.jsonx`
  const photos = `${S}/photos`
  const pTxt = `${photos}/p.txt`
  const spaceRoot = rootOf(S)
  const later = iso(Date.now() + HOUR)
  const oneDoc = {n: 1, by: 'A'}
  const oneText = JSON.stringify(oneDoc)
  const pText = 'a photo, in words\n'

  // ------------------------------------------------------------ provision and write, as the controller

  await expect('provision: A PUTs the space (root zCap, action PUT) -> 201', 201,
    () => ez(A, {url: S, method: 'PUT', action: 'PUT', json: {controller: A.did}}))
  await expect('A reads the space description', 200, () => controllerRead(A, S),
    e => jsonOf(e)?.controller === A.did)
  await expect('A writes docs/one.json (root zCap of the URL)', WRITTEN,
    () => ez(A, {url: one, method: 'PUT', action: 'PUT', json: oneDoc}))
  await expect('A writes docs/two.json (root zCap of the URL)', WRITTEN,
    () => ez(A, {url: two, method: 'PUT', action: 'PUT', json: {n: 2, by: 'A'}}))
  await expect('A writes docs/one.jsonx (root zCap naming the space URL, an ancestor)', WRITTEN,
    () => invoke(A, {url: onex, method: 'PUT', capability: spaceRoot, action: 'PUT', json: {n: 'x'}}))
  await expect('A writes photos/p.txt as text/plain (root zCap naming the container)', WRITTEN,
    () => invoke(A, {
      url: pTxt, method: 'PUT', capability: rootOf(photos), action: 'PUT',
      body: new TextEncoder().encode(pText), contentType: 'text/plain'
    }))
  {
    const mark = sent.length
    const entry = await controllerRead(A, `${docs}/absent.json`)
    const doc = jsonOf(entry)
    const ok = entry.status === 404 && doc?.type === NOT_FOUND_TYPE &&
      (entry.responseType ?? '').startsWith('application/problem+json')
    if (ok) absentBody = entry.fullBody
    report('baseline: a truly absent resource -> 404 not-found (problem+json)', ok, {requests: since(mark)})
  }

  // ------------------------------------------------------------ the four delegations from A to B

  const delegate = (key, options) => key.client.delegate({expires: later, ...options})
  const capOne = await delegate(A, {
    capability: spaceRoot, controller: B.did, invocationTarget: one, allowedActions: ['GET']
  })
  const capTwo = await delegate(A, {
    capability: spaceRoot, controller: B.did, invocationTarget: two, allowedActions: ['PUT']
  })
  const capSpace = await delegate(A, {
    capability: spaceRoot, controller: B.did, invocationTarget: S, allowedActions: ['GET']
  })
  const capPhotos = await delegate(A, {
    capability: spaceRoot, controller: B.did, invocationTarget: photos, allowedActions: ['GET']
  })

  // (1) GET on one.json
  await expect('(1) B GETs docs/one.json with its GET zCap', 200,
    () => ez(B, {url: one, capability: capOne, method: 'GET', action: 'GET'}),
    e => e.fullBody === oneText)
  await expect('(1) B HEADs docs/one.json with its GET zCap (action HEAD)', 200,
    () => ez(B, {url: one, capability: capOne, method: 'HEAD', action: 'HEAD'}))
  await expect('(1) B HEADs docs/one.json with its GET zCap (action GET)', 200,
    () => ez(B, {url: one, capability: capOne, method: 'HEAD', action: 'GET'}))

  // (2) PUT on two.json
  const bTwo = {n: 2, by: 'B', at: Date.now()}
  await expect('(2) B PUTs docs/two.json with its PUT zCap', WRITTEN,
    () => ez(B, {url: two, capability: capTwo, method: 'PUT', action: 'PUT', json: bTwo}))
  await expect("(2) A reads back B's bytes from docs/two.json", 200, () => controllerRead(A, two),
    e => e.fullBody === JSON.stringify(bTwo))

  // (3) GET on the space URL
  await expect('(3) B GETs the space description with a GET zCap on the space URL', 200,
    () => ez(B, {url: S, capability: capSpace, method: 'GET', action: 'GET'}),
    e => jsonOf(e)?.controller === A.did)
  await expect('(3) B GETs docs/one.json with the space zCap', 200,
    () => ez(B, {url: one, capability: capSpace, method: 'GET', action: 'GET'}), e => e.fullBody === oneText)
  await expect('(3) B GETs photos/p.txt with the space zCap', 200,
    () => invoke(B, {url: pTxt, capability: capSpace, method: 'GET', action: 'GET'}), e => e.fullBody === pText)

  // (4) GET on the container
  await expect('(4) B GETs photos/p.txt with the container zCap', 200,
    () => ez(B, {url: pTxt, capability: capPhotos, method: 'GET', action: 'GET'}),
    e => e.fullBody === pText && (e.responseType ?? '').startsWith('text/plain'))
  await expect('(4) B lists photos/ with the container zCap', 200,
    () => ez(B, {url: `${photos}/`, capability: capPhotos, method: 'GET', action: 'GET'}),
    e => (jsonOf(e)?.items ?? []).some(item => String(item.id ?? item.name ?? '').endsWith('p.txt')))

  // ------------------------------------------------------------ denials: each answers as an absent target

  await expectAbsent('wrong action: the GET zCap (1) used for PUT -> 404',
    () => ez(B, {url: one, capability: capOne, method: 'PUT', action: 'PUT', json: {n: 'B was here'}}))
  await expectAbsent('wrong action: the GET zCap (1) used for DELETE -> 404',
    () => ez(B, {url: one, capability: capOne, method: 'DELETE', action: 'DELETE'}))
  await expectAbsent('wrong action: the PUT zCap (2) used for GET -> 404',
    () => ez(B, {url: two, capability: capTwo, method: 'GET', action: 'GET'}))
  await expectAbsent('wrong action: the space GET zCap (3) used for PUT -> 404',
    () => ez(B, {url: one, capability: capSpace, method: 'PUT', action: 'PUT', json: {n: 'B was here'}}))
  await expectAbsent('invocation action not the method: GET zCap, action GET, method PUT -> 404',
    () => invoke(B, {url: one, capability: capOne, method: 'PUT', action: 'GET', json: {n: 'B was here'}}))
  await expectAbsent("ezcap's default action 'read' on a GET -> 404",
    () => ez(B, {url: one, capability: capOne, method: 'GET'}))
  await expect('one.json unchanged after the refused writes', 200, () => controllerRead(A, one),
    e => e.fullBody === oneText)

  {
    // ezcap signs an already-expired delegation when `now` is given: made 2 h ago, expired 1 h ago
    const expired = await delegate(A, {
      capability: spaceRoot, controller: B.did, invocationTarget: one, allowedActions: ['GET'],
      now: Date.now() - 2 * HOUR, expires: iso(Date.now() - HOUR)
    })
    await expectAbsent('expired: zCap made 2 h ago that expired 1 h ago (ezcap delegate with `now`) -> 404',
      () => invoke(B, {url: one, capability: expired, method: 'GET', action: 'GET'}),
      {expires: expired.expires, created: expired.proof.created})
  }

  await expectAbsent('other resource: the one.json zCap used on two.json -> 404',
    () => invoke(B, {url: two, capability: capOne, method: 'GET', action: 'GET'}))
  await expectAbsent('other resource: the one.json zCap used on one.jsonx (string prefix) -> 404',
    () => invoke(B, {url: onex, capability: capOne, method: 'GET', action: 'GET'}))
  await expectAbsent('other resource: the photos container zCap used on docs/one.json -> 404',
    () => invoke(B, {url: one, capability: capPhotos, method: 'GET', action: 'GET'}))

  {
    const fromC = await delegate(C, {
      capability: spaceRoot, controller: B.did, invocationTarget: S, allowedActions: ['GET']
    })
    await expectAbsent('delegated by a non-controller: C delegates the space root to B, B GETs one.json -> 404',
      () => ez(B, {url: one, capability: fromC, method: 'GET', action: 'GET'}))
    await expectAbsent('delegated by a non-controller: C delegates the space root to B, B GETs the space -> 404',
      () => ez(B, {url: S, capability: fromC, method: 'GET', action: 'GET'}))
  }

  await expectAbsent("replayed with another key: B's zCap (1) invoked by C -> 404",
    () => ez(C, {url: one, capability: capOne, method: 'GET', action: 'GET'}))
  await expectAbsent("replayed with another key: B's space zCap (3) invoked by C -> 404",
    () => ez(C, {url: S, capability: capSpace, method: 'GET', action: 'GET'}))

  {
    // A -> k1 -> ... -> k9 is root + 9 delegations = 10 capabilities; one more is 11
    const ks = await Promise.all(Array.from({length: 10}, (_, i) => makeKey(`k${i + 1}`)))
    let link = await delegate(A, {
      capability: spaceRoot, controller: ks[0].did, invocationTarget: one, allowedActions: ['GET']
    })
    for (let i = 1; i < 9; i++) link = await delegate(ks[i - 1], {capability: link, controller: ks[i].did})
    await expect('chain of 10 (root, A->k1->...->k9): k9 GETs one.json', 200,
      () => ez(ks[8], {url: one, capability: link, method: 'GET', action: 'GET'}), e => e.fullBody === oneText)
    let eleventh
    let madeBy = 'ezcap ZcapClient.delegate'
    try {
      eleventh = await delegate(ks[8], {capability: link, controller: ks[9].did})
    } catch (error) {
      madeBy = `hand-signed (ezcap refused: ${error.message})`
      eleventh = await jsigs.sign({
        '@context': link['@context'][0],
        id: `urn:uuid:${crypto.randomUUID()}`,
        controller: ks[9].did,
        parentCapability: link.id,
        invocationTarget: one,
        expires: link.expires,
        allowedAction: ['GET']
      }, {
        documentLoader: A.client.documentLoader,
        suite: new Ed25519Signature2020({signer: ks[8].signer}),
        purpose: new CapabilityDelegation({parentCapability: link, _skipLocalValidationForTesting: true})
      })
    }
    await expectAbsent('chain of 11 (k9->k10): k10 GETs one.json -> 404',
      () => ez(ks[9], {url: one, capability: eleventh, method: 'GET', action: 'GET'}),
      {madeBy, capabilityChainLength: eleventh.proof.capabilityChain.length + 1})
  }

  {
    const fresh = await delegate(A, {
      capability: spaceRoot, controller: B.did, invocationTarget: one, allowedActions: ['GET']
    })
    await expect('control: an untampered twin of the tampered zCaps works', 200,
      () => ez(B, {url: one, capability: fresh, method: 'GET', action: 'GET'}))
    const badSig = structuredClone(fresh)
    const pv = badSig.proof.proofValue
    const at = Math.floor(pv.length / 2)
    badSig.proof.proofValue = pv.slice(0, at) + (pv[at] === 'A' ? 'B' : 'A') + pv.slice(at + 1)
    await expectAbsent('tampered proof: one character of proofValue changed -> 404',
      () => ez(B, {url: one, capability: badSig, method: 'GET', action: 'GET'}))
    const widened = structuredClone(fresh)
    widened.allowedAction = ['GET', 'PUT']
    await expectAbsent('tampered: allowedAction widened to GET+PUT after signing, used for PUT -> 404',
      () => ez(B, {url: one, capability: widened, method: 'PUT', action: 'PUT', json: {n: 'tampered'}}))
    await expectAbsent('tampered: allowedAction widened after signing, used for GET -> 404',
      () => ez(B, {url: one, capability: widened, method: 'GET', action: 'GET'}))
  }

  {
    const elsewhere = 'https://other.example/space/' + spaceId
    const foreign = await delegate(A, {
      capability: rootOf(elsewhere), controller: B.did, invocationTarget: `${elsewhere}/docs/one.json`,
      allowedActions: ['GET']
    })
    await expectAbsent('other origin: zCap from the root of https://other.example/space/S, invoked here -> 404',
      () => invoke(B, {url: one, capability: foreign, method: 'GET', action: 'GET'}))
    const narrowedAway = await delegate(A, {
      capability: spaceRoot, controller: B.did, invocationTarget: `${elsewhere}/docs/one.json`,
      allowedActions: ['GET']
    })
    await expectAbsent('other origin: our space root delegated for https://other.example/.../one.json -> 404',
      () => invoke(B, {url: one, capability: narrowedAway, method: 'GET', action: 'GET'}))
  }

  {
    // the body changes after signing: the signed Digest no longer matches
    const signedFor = {n: 2, by: 'B', version: 'signed'}
    const sentInstead = {n: 2, by: 'B', version: 'altered'}
    await expect('body altered after signing: delegated PUT signed for X, sent Y -> 400 invalid-authorization-header',
      400, () => invoke(B, {url: two, capability: capTwo, method: 'PUT', action: 'PUT', json: signedFor,
        sendJson: sentInstead}),
      e => jsonOf(e)?.type === BAD_AUTH_TYPE)
    await expect('body altered after signing: two.json still holds the earlier bytes', 200,
      () => controllerRead(A, two), e => e.fullBody === JSON.stringify(bTwo))
  }

  // ------------------------------------------------------------ revocation

  {
    const url = `${S}/zcaps/revocations/${encodeURIComponent(capOne.id)}`
    await expect('revoke: A POSTs (1) to /zcaps/revocations/{id} (root zCap, action POST) -> 204', 204,
      () => ez(A, {url, method: 'POST', action: 'POST', json: capOne}))
    await expect('revoke: the revocation list shows (1)', 200,
      () => ez(A, {url: `${S}/zcaps/revocations/`, method: 'GET', action: 'GET'}),
      e => (jsonOf(e)?.items ?? []).some(item => item.id === capOne.id))
    await expectAbsent('revoked: B GETs one.json with the revoked zCap (1) -> 404',
      () => ez(B, {url: one, capability: capOne, method: 'GET', action: 'GET'}))
    await expectAbsent('revoked: the revocation list is not readable by B -> 404',
      () => ez(B, {url: `${S}/zcaps/revocations/`, method: 'GET', action: 'GET'}))
  }
  {
    const capDocs = await delegate(A, {
      capability: spaceRoot, controller: B.did, invocationTarget: docs, allowedActions: ['GET']
    })
    const capBD = await delegate(B, {capability: capDocs, controller: D.did, invocationTarget: one})
    const url = `${S}/zcaps/revocations/${encodeURIComponent(capBD.id)}`
    await expect('onward: D GETs one.json with the B->D zCap', 200,
      () => ez(D, {url: one, capability: capBD, method: 'GET', action: 'GET'}), e => e.fullBody === oneText)
    await expectAbsent('onward: C (outside the chain) cannot revoke B->D -> 404',
      () => ez(C, {url, method: 'POST', action: 'POST', json: capBD}))
    await expect('onward: D still reads after the refused revocation', 200,
      () => ez(D, {url: one, capability: capBD, method: 'GET', action: 'GET'}))
    await expect('onward: B revokes the B->D zCap it delegated -> 204', 204,
      () => ez(B, {url, method: 'POST', action: 'POST', json: capBD}))
    await expectAbsent('onward: D GETs one.json with the revoked B->D zCap -> 404',
      () => ez(D, {url: one, capability: capBD, method: 'GET', action: 'GET'}))
    await expect("onward: B's own docs zCap still works", 200,
      () => ez(B, {url: one, capability: capDocs, method: 'GET', action: 'GET'}), e => e.fullBody === oneText)
  }

  // ------------------------------------------------------------ PublicCanRead (last: it opens reads)

  await expectAbsent('before the policy: unsigned GET of one.json -> 404', () => anonymous(one))
  await expect('policy: A PUTs {"type":"PublicCanRead"} on the space', WRITTEN,
    () => ez(A, {url: `${S}/policy`, method: 'PUT', action: 'PUT', json: {type: 'PublicCanRead'}}))
  await expect('PublicCanRead: unsigned fetch GET of one.json -> 200', 200, () => anonymous(one),
    e => e.fullBody === oneText)
  await expect('PublicCanRead: unsigned HEAD of photos/p.txt -> 200', 200, () => anonymous(pTxt, 'HEAD'))
  await expectAbsent('PublicCanRead: unsigned PUT is still refused -> 404', async () => {
    await fetch(one, {method: 'PUT', headers: {'content-type': 'application/json'}, body: '{"n":"anon"}'})
    return sent.at(-1)
  })
}

const base = process.argv[2]
if (!base) {
  process.stderr.write('usage: node zcap_e2e.mjs BASE_URL\n')
  process.exit(2)
}
try {
  await main(base.replace(/\/$/, ''))
} catch (error) {
  report('no unexpected error', false, {error: String(error?.stack ?? error), lastSent: since(sent.length - 1)})
  process.exit(2)
}
process.exit(results.length > 0 && results.every(Boolean) ? 0 : 1)
