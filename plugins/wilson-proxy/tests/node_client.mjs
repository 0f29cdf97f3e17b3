// A client in another language: Node's own fetch, streaming an OpenAI-style answer through wilson proxy.
// Usage: node node_client.mjs URL JSON_BODY  -> prints {"status", "contentType", "chunks", "body" (base64)}
const [url, body] = process.argv.slice(2);
const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: "Bearer sk-node", "x-wilson-call-type": "node" },
  body,
});
const reader = response.body.getReader();
const parts = [];
let chunks = 0;
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  chunks += 1;
  parts.push(Buffer.from(value));
}
process.stdout.write(JSON.stringify({
  status: response.status,
  contentType: response.headers.get("content-type"),
  chunks,
  body: Buffer.concat(parts).toString("base64"),
}));
