// A minimal browser wallet: an Ed25519 key from WebCrypto, its did:key, Cavage draft-12
// signatures as wallet-attached-storage-client makes them, and cross-origin fetches to WAS.
// It records what it saw (statuses, exposed headers, bodies) and POSTs that to its own
// origin's /result; the Python test decides what is right.  No libraries: what a wallet
// page can do with the browser alone.

const was = new URLSearchParams(location.search).get("was");
const report = { steps: {}, error: null, failedStep: null };

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

// base58btc (Bitcoin alphabet): repeated division of the big-endian number by 58.
function base58btc(bytes) {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  const digits = []; // little-endian base-58 digits
  for (const byte of bytes) {
    let carry = byte;
    for (let i = 0; i < digits.length; i++) {
      carry += digits[i] * 256;
      digits[i] = carry % 58;
      carry = Math.floor(carry / 58);
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = Math.floor(carry / 58);
    }
  }
  return "1".repeat(zeros) + digits.reverse().map((d) => B58[d]).join("");
}

function base64url(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function makeKey() {
  const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
  const multikey = new Uint8Array(2 + raw.length);
  multikey.set([0xed, 0x01]);
  multikey.set(raw, 2);
  const fingerprint = "z" + base58btc(multikey);
  const did = `did:key:${fingerprint}`;
  return { keys, raw, did, keyId: `${did}#${fingerprint}` };
}

// The Authorization header wallet_attached_storage_client.create_authorization_header builds.
async function authorization(key, method, path) {
  const created = Math.floor(Date.now() / 1000);
  const expires = created + 30;
  const covered = "(created) (expires) (key-id) (request-target)";
  const text = [
    `(created): ${created}`,
    `(expires): ${expires}`,
    `(key-id): ${key.keyId}`,
    `(request-target): ${method.toLowerCase()} ${path}`,
  ].join("\n");
  const signature = new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, key.keys.privateKey, new TextEncoder().encode(text)),
  );
  return (
    `Signature keyId="${key.keyId}",headers="${covered}",signature="${base64url(signature)}",` +
    `created="${created}",expires="${expires}"`
  );
}

// One signed cross-origin request; the step records its status and the headers a page can read.
async function step(name, key, method, path, { body, contentType, headers = {} } = {}) {
  report.failedStep = name;
  const sent = { ...headers, Authorization: await authorization(key, method, path) };
  if (contentType) sent["Content-Type"] = contentType;
  const response = await fetch(was + path, { method, headers: sent, body });
  const text = method === "HEAD" ? "" : await response.text();
  const seen = {
    status: response.status,
    location: response.headers.get("location"),
    etag: response.headers.get("etag"),
    contentType: response.headers.get("content-type"),
    body: text,
  };
  report.steps[name] = seen;
  report.failedStep = null;
  return seen;
}

async function run() {
  const key = await makeKey();
  report.did = key.did;
  report.publicKeyHex = hex(key.raw);
  const spaceId = crypto.randomUUID();
  const space = `/space/${spaceId}`;
  report.space = space;

  await step("provision", key, "PUT", space, {
    body: JSON.stringify({ controller: key.did }),
    contentType: "application/json",
  });
  const file = `${space}/hello.txt`;
  report.written = "hello from a browser wallet \u2713";
  await step("write", key, "PUT", file, { body: report.written, contentType: "text/plain; charset=utf-8" });
  const read = await step("read", key, "GET", file);
  await step("notModified", key, "GET", file, { headers: { "If-None-Match": read.etag || "none" } });
  const posted = await step("post", key, "POST", `${space}/notes/`, {
    body: JSON.stringify({ note: 1 }),
    contentType: "application/json",
  });
  await step("list", key, "GET", `${space}/notes/`);
  if (posted.location) await step("readPosted", key, "GET", new URL(posted.location).pathname);
  await step("delete", key, "DELETE", file);
  await step("gone", key, "GET", file);
}

async function main() {
  try {
    await run();
  } catch (e) {
    report.error = `${e.name}: ${e.message}`;
  }
  document.getElementById("status").textContent = "done";
  await fetch("/result", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(report),
  });
}

main();
