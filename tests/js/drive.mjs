// Drive a running was-twisted server with the real @wallet.storage/fetch-client.
//
//   node tests/js/drive.mjs http://127.0.0.1:PORT
//
// Prints one JSON line per check, {"check", "ok", "detail"}, and exits 1 if
// any check failed (2 on an unexpected error).  Every request goes through a
// wrapper around globalThis.fetch that adds a 10 s timeout and records what
// the client actually sent (method, URL, authorization header), so a failing
// check can show the exact request.

import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto'
import { StorageClient } from '@wallet.storage/fetch-client'

const TIMEOUT_MS = 10_000

// ---------------------------------------------------------------- fetch log

const sent = []
const realFetch = globalThis.fetch
globalThis.fetch = async function recordingFetch (input, init = {}) {
  const url = input instanceof Request ? input.url : String(input)
  const headers = new Headers(init.headers ?? {})
  const entry = {
    method: init.method ?? 'GET',
    url,
    authorization: headers.get('authorization'),
    contentType: headers.get('content-type'),
    bodyType: init.body == null ? null : (init.body.type ?? typeof init.body)
  }
  sent.push(entry)
  const response = await realFetch(input, { ...init, signal: init.signal ?? AbortSignal.timeout(TIMEOUT_MS) })
  entry.status = response.status
  return response
}

/** the last request the client sent */
const lastSent = () => sent.at(-1)

/** the response body as text (works for the client's wrappers and raw Responses) */
async function bodyText (response) {
  try {
    if (typeof response.text === 'function') return await response.clone().text()
    if (typeof response.blob === 'function') return await (await response.blob()).text()
  } catch (e) {
    return `<unreadable body: ${e}>`
  }
  return null
}

/** a response header, whether the client gave back Headers or [name, value] pairs */
function header (response, name) {
  const h = response.headers
  if (h && typeof h.get === 'function') return h.get(name)
  for (const [k, v] of h ?? []) if (k.toLowerCase() === name) return v
  return null
}

// ---------------------------------------------------------------- signer

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** base58btc (Bitcoin alphabet) */
function base58btc (bytes) {
  let n = 0n
  for (const b of bytes) n = (n << 8n) | BigInt(b)
  let out = ''
  while (n > 0n) {
    out = B58[Number(n % 58n)] + out
    n /= 58n
  }
  for (const b of bytes) {
    if (b !== 0) break
    out = '1' + out
  }
  return out
}

/** an Ed25519 signer {id, algorithm, controller, sign({data})} with a did:key id */
function makeSigner () {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')
  if (raw.length !== 32) throw new Error(`unexpected Ed25519 public key length ${raw.length}`)
  const multibase = 'z' + base58btc(Buffer.concat([Buffer.from([0xed, 0x01]), raw]))
  const controller = `did:key:${multibase}`
  return {
    id: `${controller}#${multibase}`,
    controller,
    algorithm: 'Ed25519',
    async sign ({ data }) {
      return new Uint8Array(cryptoSign(null, data, privateKey))
    }
  }
}

// ---------------------------------------------------------------- checks

const results = []

function report (check, ok, detail) {
  results.push(ok)
  process.stdout.write(JSON.stringify({ check, ok: Boolean(ok), detail }) + '\n')
}

/** report a response check, attaching the request as sent and the response */
async function expectStatus (check, response, expected, extra = {}) {
  const ok = response.status === expected
  const detail = { expected, status: response.status, sent: lastSent(), ...extra }
  if (!ok) detail.body = await bodyText(response)
  report(check, ok, detail)
  return ok
}

async function putThenGet (check, resource, blob, expectedType) {
  const put = await resource.put(blob)
  const putSent = lastSent()
  const putBody = put.ok ? undefined : await bodyText(put)
  const got = await resource.get()
  const getSent = lastSent()
  const gotBytes = got.ok ? Buffer.from(await (await got.blob()).arrayBuffer()) : null
  const wantBytes = Buffer.from(await blob.arrayBuffer())
  const contentType = header(got, 'content-type')
  const ok = put.ok && got.status === 200 && gotBytes.equals(wantBytes) && contentType === expectedType
  report(check, ok, {
    put: { status: put.status, sent: putSent, body: putBody },
    get: {
      status: got.status,
      sent: getSent,
      contentType,
      expectedContentType: expectedType,
      bytesMatch: gotBytes ? gotBytes.equals(wantBytes) : false,
      body: got.ok ? undefined : await bodyText(got)
    }
  })
  return ok
}

async function main (base) {
  const storage = new StorageClient(new URL(base))
  const signer = makeSigner()
  const other = makeSigner()
  const id = `urn:uuid:${crypto.randomUUID()}`
  const space = storage.space({ signer, id })

  // provision: PUT the space with a controller, as the client's README does
  {
    const body = new Blob([JSON.stringify({ controller: signer.controller })], { type: 'application/json' })
    const r = await space.put(body)
    await expectStatus('provision space (PUT /space/{uuid}, controller = signer DID)', r, 201, {
      location: header(r, 'location')
    })
    const g = await space.get()
    const doc = g.ok ? await g.json() : null
    report('GET space shows the controller', g.status === 200 && doc?.controller === signer.controller, {
      status: g.status, sent: lastSent(), doc
    })
  }

  // plain name, text
  const hello = space.resource('hello.txt')
  await putThenGet('PUT + GET text resource at a plain name', hello,
    new Blob(['hello from the JS client\n'], { type: 'text/plain' }), 'text/plain')

  // JSON
  await putThenGet('PUT + GET JSON resource', space.resource('data/doc.json'),
    new Blob([JSON.stringify({ a: [1, 'é'], b: null })], { type: 'application/json' }), 'application/json')

  // a name that needs percent-encoding: space, unicode, and a literal "%41".
  // The client joins the name into a path and lets the WHATWG URL parser
  // encode it: space and non-ASCII are escaped, "%" is NOT, so "%41" goes on
  // the wire as the escape for "A".
  const tricky = 'café ü %41.txt'
  await putThenGet(`PUT + GET name needing percent-encoding (${JSON.stringify(tricky)})`,
    space.resource(tricky), new Blob(['tricky name'], { type: 'text/plain;charset=utf-8' }),
    'text/plain;charset=utf-8')
  {
    const trickySent = sent.at(-1).url
    // the wire form %41 means "A": the same resource under its decoded name
    const same = await space.resource('café ü A.txt').get()
    const sameText = same.ok ? await (await same.blob()).text() : null
    report('client sends "%41" unescaped: server decodes it once, to "A"',
      same.status === 200 && sameText === 'tricky name', {
        urlSentForTrickyName: trickySent, status: same.status, sent: lastSent(), body: sameText
      })
  }
  // To name a literal "%41" with this client the caller escapes the "%".
  {
    const literal = space.resource('lit %2541.txt')
    await putThenGet('PUT + GET literal "%41" in a name (caller passes "%2541")', literal,
      new Blob(['literal percent'], { type: 'text/plain' }), 'text/plain')
    const listing = await space.resource('/').get()
    const doc = listing.ok ? await listing.json() : null
    const ids = (doc?.items ?? []).map(item => item.id).sort()
    const want = ['café ü A.txt', 'data/doc.json', 'hello.txt', 'lit %41.txt']
    report('container listing (GET /space/{uuid}/) shows the decoded names',
      listing.status === 200 && want.every(name => ids.includes(name)), {
        status: listing.status, sent: lastSent(), ids, want
      })
  }

  // A "%" that starts no escape goes on the wire as is ("100%%20sure.txt"):
  // the signed (request-target) holds it raw and the server keeps the "%".
  await putThenGet('PUT + GET name with a bare "%" ("100% sure.txt")', space.resource('100% sure.txt'),
    new Blob(['bare percent'], { type: 'text/plain' }), 'text/plain')

  // A query string: the client signs pathname + search, so (request-target)
  // includes "?v=1&w=a%20b"; the query does not name the resource.
  {
    const withQuery = space.resource('q.txt?v=1&w=a%20b')
    await putThenGet('PUT + GET with a query string (signed in (request-target))', withQuery,
      new Blob(['query'], { type: 'text/plain' }), 'text/plain')
    const plain = await space.resource('q.txt').get()
    const text = plain.ok ? await (await plain.blob()).text() : null
    report('the query is not part of the resource name', plain.status === 200 && text === 'query', {
      status: plain.status, sent: lastSent(), body: text
    })
  }

  // a body with no content type: a Blob with type "" makes fetch send none
  await putThenGet('PUT Blob without type is stored as application/octet-stream',
    space.resource('untyped.bin'), new Blob([new Uint8Array([0, 1, 2, 254, 255])]),
    'application/octet-stream')

  // unsigned GET: private by default ("spec" profile) -> 404
  {
    const anonymous = storage.space(id).resource('hello.txt')
    const r = await anonymous.get()
    await expectStatus('unsigned GET of a resource -> 404', r, 404)
  }

  // another signer's GET -> 404
  {
    const r = await hello.get({ signer: other })
    await expectStatus("a different signer's GET of a resource -> 404", r, 404)
    const p = await hello.put(new Blob(['overwrite'], { type: 'text/plain' }), { signer: other })
    await expectStatus("a different signer's PUT of a resource -> 404", p, 404)
    const s = await space.get({ signer: other })
    await expectStatus("a different signer's GET of the space -> 404", s, 404)
  }

  // delete the resource, then it is gone
  {
    const d = await hello.delete()
    await expectStatus('DELETE resource -> 204', d, 204)
    const g = await hello.get()
    await expectStatus('GET deleted resource -> 404', g, 404)
  }

  // delete the space
  {
    const d = await space.delete()
    await expectStatus('DELETE space -> 204', d, 204)
    const g = await space.get()
    await expectStatus('GET deleted space -> 404', g, 404)
  }
}

const base = process.argv[2]
if (!base) {
  process.stderr.write('usage: node drive.mjs BASE_URL\n')
  process.exit(2)
}
try {
  await main(base)
} catch (error) {
  report('no unexpected error', false, { error: String(error?.stack ?? error), lastSent: lastSent() ?? null })
  process.exit(2)
}
process.exit(results.every(Boolean) && results.length > 0 ? 0 : 1)
