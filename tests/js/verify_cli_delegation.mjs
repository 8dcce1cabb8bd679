// Digital Bazaar's verdict on what `was-admin` makes: its key file and its delegated capabilities.
//
// Reads one JSON object on stdin: {keyFile, capability, rootController, expectedTarget, message}.
// Prints one JSON object: whether @digitalbazaar/ed25519-verification-key-2020 imports the key file
// (and its signature over `message`, base64url), and whether jsonld-signatures with
// @digitalbazaar/zcap's CapabilityDelegation purpose verifies the capability chain.
import {Ed25519Signature2020} from '@digitalbazaar/ed25519-signature-2020'
import {Ed25519VerificationKey2020} from '@digitalbazaar/ed25519-verification-key-2020'
import {CapabilityDelegation, constants as zcapConstants, createRootCapability} from '@digitalbazaar/zcap'
import jsigs from 'jsonld-signatures'
import zcapContext from 'zcap-context'
import ed25519Context from 'ed25519-signature-2020-context'

const ZCAP_URL = zcapContext.CONTEXT_URL
const ED_URL = ed25519Context.CONTEXT_URL
const input = JSON.parse(await new Promise(resolve => {
  let text = ''
  process.stdin.on('data', chunk => { text += chunk })
  process.stdin.on('end', () => resolve(text))
}))

function rootIdOf (capability) {
  const chain = capability.proof.capabilityChain
  return chain[0]
}

async function documentLoader (url) {
  if (url === ZCAP_URL) return {contextUrl: null, documentUrl: url, document: zcapContext.CONTEXT, tag: 'static'}
  if (url === ED_URL) return {contextUrl: null, documentUrl: url, document: ed25519Context.CONTEXT, tag: 'static'}
  if (url.startsWith('did:key:')) {
    const [did, fragment] = url.split('#')
    const fingerprint = did.slice('did:key:'.length)
    const pair = Ed25519VerificationKey2020.fromFingerprint({fingerprint})
    pair.controller = did
    pair.id = `${did}#${fingerprint}`
    const keyDocument = await pair.export({publicKey: true, includeContext: true})
    if (fragment !== undefined) return {contextUrl: null, documentUrl: url, document: keyDocument}
    const {'@context': _, ...verificationMethod} = keyDocument
    return {
      contextUrl: null,
      documentUrl: url,
      document: {
        '@context': ['https://www.w3.org/ns/did/v1', ED_URL],
        id: did,
        verificationMethod: [verificationMethod],
        capabilityDelegation: [pair.id],
        capabilityInvocation: [pair.id]
      }
    }
  }
  if (url === rootIdOf(input.capability)) {
    const target = decodeURIComponent(url.slice(zcapConstants.ZCAP_ROOT_PREFIX.length))
    return {
      contextUrl: null,
      documentUrl: url,
      document: createRootCapability({controller: input.rootController, invocationTarget: target})
    }
  }
  throw new Error(`document loader refuses ${url}`)
}

function messages (error) {
  if (!error) return []
  const inner = error.errors ?? (error.cause ? [error.cause] : [])
  const found = inner.flatMap(messages)
  return found.length ? found : [error.message ?? String(error)]
}

const out = {}
try {
  const pair = await Ed25519VerificationKey2020.from(input.keyFile)
  out.keyDid = pair.controller
  out.fingerprint = pair.fingerprint()
  const signature = await pair.signer().sign({data: new TextEncoder().encode(input.message)})
  out.signature = Buffer.from(signature).toString('base64url')
} catch (e) {
  out.keyError = e.message
}
const result = await jsigs.verify(structuredClone(input.capability), {
  suite: new Ed25519Signature2020(),
  purpose: new CapabilityDelegation({
    expectedRootCapability: rootIdOf(input.capability),
    allowTargetAttenuation: true,
    maxClockSkew: 300,
    suite: new Ed25519Signature2020()
  }),
  documentLoader
})
out.verified = result.verified
out.error = result.verified ? null : messages(result.error).join(' | ')
console.log(JSON.stringify(out))
