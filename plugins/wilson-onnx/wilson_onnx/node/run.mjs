// Runs an exported Wilson folder in Transformers.js (local files only) and reports,
// for each prompt: the ids its own tokenizer + chat template give, the logits at the
// last prompt position, and the ids of greedy generation.
//
//   node run.mjs JOB.json RESULT.json
//
// JOB: {"model_dir": "/abs/folder", "dtype": "fp32" | "q8", "max_new_tokens": 20,
//       "prompts": [{"messages": [...], "tools": [...] | null, "ids": [...]}]}
// "ids" (the Python side's prompt ids) are used for the forward pass and generation,
// so the model is compared on identical input even when the template differs.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AutoModelForCausalLM, AutoTokenizer, Tensor, env } from "@huggingface/transformers";

const [jobPath, resultPath] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobPath, "utf8"));
const folder = path.resolve(job.model_dir);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(folder) + path.sep;
const name = path.basename(folder);

const started = performance.now();
const tokenizer = await AutoTokenizer.from_pretrained(name);
const model = await AutoModelForCausalLM.from_pretrained(name, { dtype: job.dtype, device: "cpu" });
const loadSeconds = (performance.now() - started) / 1000;

const results = [];
for (const prompt of job.prompts) {
  const entry = {};
  try {
    const options = { add_generation_prompt: true, tokenize: true, return_tensor: false };
    if (prompt.tools) options.tools = prompt.tools;
    let ids = tokenizer.apply_chat_template(prompt.messages, options);
    if (ids && !Array.isArray(ids) && ids.input_ids) ids = ids.input_ids; // 4.x returns a dict
    if (ids && ids.data) ids = ids.data; // a Tensor
    entry.template_ids = Array.from(ids.flat ? ids.flat() : ids, Number);
  } catch (error) {
    entry.template_error = String(error && error.message ? error.message : error);
  }
  const ids = prompt.ids ?? entry.template_ids;
  const inputIds = new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
  const mask = new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]);
  const out = await model({ input_ids: inputIds, attention_mask: mask });
  const vocab = out.logits.dims[2];
  const data = out.logits.data;
  entry.last_logits = Array.from(data.subarray((ids.length - 1) * vocab, ids.length * vocab));
  const t0 = performance.now();
  const generated = await model.generate({
    input_ids: inputIds,
    attention_mask: mask,
    max_new_tokens: job.max_new_tokens,
    do_sample: false,
    eos_token_id: null,
  });
  entry.generate_seconds = (performance.now() - t0) / 1000;
  entry.generated_ids = Array.from(generated.data, Number).slice(ids.length);
  results.push(entry);
}
writeFileSync(resultPath, JSON.stringify({ load_seconds: loadSeconds, results }));
