// Wilson's llama.cpp runner: loads one GGUF (plus optional LoRA adapter GGUFs) with
// node-llama-cpp's prebuilt llama.cpp and answers JSON-lines requests on stdin.
//
//   node runner.mjs MODEL.gguf [--lora ADAPTER.gguf[=SCALE]]... [--exact] [--context N] [--threads N]
//
// Requests (one JSON object per line):          Answers (one JSON object per line):
//   {"op": "info"}                               {"ok": true, "vocab": N, "bos": id|null, "eos": id|null, "eog": [...]}
//   {"op": "tokenize", "text": T}                 {"ok": true, "tokens": [...]}   (special tokens parsed)
//   {"op": "detokenize", "tokens": [...]}         {"ok": true, "text": T}
//   {"op": "probs", "tokens": [...]}              {"ok": true, "probs": [p_0, ..., p_N-1]} next-token distribution
//   {"op": "greedy", "tokens": [...], "n": K}     {"ok": true, "tokens": [...]} K argmax tokens, EOG not special
//   {"op": "generate", "tokens": [...], "max_tokens": K, "temperature": t, "seed": s,
//    "grammar": GBNF?, "json_schema": {...}?, "wrap": [PREFIX, SUFFIX]?, "stream": bool?}
//                                                 {"ok": true, "tokens": [...], "stopped": "eog"|"length", "text": T}
//     "grammar" (GBNF) or "json_schema" (node-llama-cpp's JSON-schema grammar; "wrap" puts literal
//     text around it) constrain every sampled token.  With "stream", one
//     {"ok": true, "partial": true, "token": id, "text": DELTA} line comes per token before the answer
//     (DELTA holds back an incomplete UTF-8 character until the next token completes it).
// Errors answer {"ok": false, "error": MESSAGE}. "--exact" turns flash attention off and keeps
// the KV cache in F32, so that logits can be compared with PyTorch's.
import {createInterface} from "node:readline";
import {getLlama, LlamaGrammarEvaluationState, LlamaLogLevel} from "node-llama-cpp";

function parseArgs(argv) {
    const args = {model: null, lora: [], exact: false, context: 1024, threads: 1};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--lora") {
            const [path, scale] = argv[++i].split("=");
            args.lora.push({filePath: path, scale: scale === undefined ? 1 : Number(scale)});
        } else if (a === "--exact") args.exact = true;
        else if (a === "--context") args.context = Number(argv[++i]);
        else if (a === "--threads") args.threads = Number(argv[++i]);
        else if (args.model === null) args.model = a;
        else throw new Error(`unexpected argument ${a}`);
    }
    if (args.model === null) throw new Error("usage: runner.mjs MODEL.gguf [--lora ADAPTER.gguf[=SCALE]] [--exact]");
    return args;
}

const write = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath: args.model});
    const contextOptions = {
        contextSize: args.context,
        batchSize: args.context,
        threads: args.threads,
        sequences: 1,
    };
    if (args.exact) {
        contextOptions.flashAttention = false;
        contextOptions.experimentalKvCacheKeyType = "F32";
        contextOptions.experimentalKvCacheValueType = "F32";
    }
    if (args.lora.length) contextOptions.lora = {adapters: args.lora};
    const context = await model.createContext(contextOptions);
    const sequence = context.getSequence();
    const vocab = model.fileInsights.tokenizer?.vocabSize ?? null;
    const nVocab = model.tokens?.vocabSize ?? vocab;

    async function evaluateLast(tokens, generateNext) {
        await sequence.clearHistory();
        const input = tokens.slice(0, -1);
        input.push([tokens[tokens.length - 1], {generateNext}]);
        const out = await sequence.controlledEvaluate(input);
        return out[out.length - 1].next;
    }

    async function step(token, generateNext) {
        const out = await sequence.controlledEvaluate([[token, {generateNext}]]);
        return out[0].next;
    }

    const grammars = new Map();  // request grammar (as JSON text) -> LlamaGrammar, built once

    async function grammarFor(req) {
        if (!req.grammar && !req.json_schema) return null;
        const key = JSON.stringify([req.grammar ?? null, req.json_schema ?? null, req.wrap ?? null]);
        if (!grammars.has(key)) {
            let text = req.grammar;
            if (req.json_schema) {
                const json = await llama.createGrammarForJsonSchema(req.json_schema);
                // node-llama-cpp ends its JSON root with newlines (its chat session stops on them):
                // the reply here is the JSON value alone, then the end of generation
                let body = json.grammar.replace(/^root ::=(.*?)\s*"(\\n)+"\s*\[\\n\]\*\s*$/m, "wilson-json ::=$1");
                if (!/^wilson-json ::=/m.test(body)) body = json.grammar.replace(/^root ::=/m, "wilson-json ::=");
                const [prefix, suffix] = req.wrap ?? ["", ""];
                const quote = (t) => (t ? ` ${JSON.stringify(t)} ` : " ");
                text = `root ::=${quote(prefix)}wilson-json${quote(suffix)}\n` + body;
            }
            grammars.set(key, await llama.createGrammar({grammar: text}));
        }
        return grammars.get(key);
    }

    const handlers = {
        async info() {
            const eog = [];
            const n = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0;
            for (let t = 0; t < n; t++) if (model.isEogToken(t)) eog.push(t);
            return {vocab: n || nVocab, bos: model.tokens.bos, eos: model.tokens.eos, eog,
                    flash_attention: context.flashAttention, kv_key_type: context.kvCacheKeyType};
        },
        async tokenize(req) {
            return {tokens: Array.from(model.tokenize(req.text, true))};
        },
        async detokenize(req) {
            return {text: model.detokenize(req.tokens, req.special ?? false)};
        },
        async probs(req) {
            const next = await evaluateLast(req.tokens, {probabilities: true});
            const n = next.probabilities.size;
            const probs = new Array(n).fill(0);
            for (const [token, p] of next.probabilities) probs[token] = p;
            return {probs};
        },
        async greedy(req) {
            const produced = [];
            let next = await evaluateLast(req.tokens, {token: true, options: {temperature: 0}});
            while (produced.length < req.n) {
                produced.push(next.token);
                if (produced.length === req.n) break;
                next = await step(next.token, {token: true, options: {temperature: 0}});
            }
            return {tokens: produced};
        },
        async generate(req) {
            const options = {temperature: req.temperature ?? 0};
            if (req.seed !== undefined && req.seed !== null) options.seed = req.seed;
            if (req.top_p !== undefined && req.top_p !== null) options.topP = req.top_p;
            const grammar = await grammarFor(req);
            const produced = [];
            let stopped = "length";
            let streamed = "";
            const stream = (token) => {
                if (!req.stream) return;
                const text = model.detokenize(produced, false);
                const complete = text.endsWith("\uFFFD") ? text.slice(0, -1) : text;
                const delta = complete.startsWith(streamed) ? complete.slice(streamed.length) : "";
                streamed = complete.startsWith(streamed) ? complete : streamed;
                write({ok: true, partial: true, token, text: delta});
            };
            if (grammar) options.grammarEvaluationState = new LlamaGrammarEvaluationState({model, grammar});
            // sequence.evaluate samples through the grammar (controlledEvaluate would ignore it)
            await sequence.clearHistory();
            if (req.max_tokens > 0) {
                stopped = "eog";
                for await (const token of sequence.evaluate(req.tokens, options)) {
                    produced.push(token);
                    stream(token);
                    if (produced.length >= req.max_tokens) { stopped = "length"; break; }
                }
            }
            return {tokens: produced, stopped, text: model.detokenize(produced, false)};
        },
    };

    write({ok: true, ready: true, model: args.model, lora: args.lora.map((l) => l.filePath)});
    const lines = createInterface({input: process.stdin, crlfDelay: Infinity});
    for await (const line of lines) {
        if (!line.trim()) continue;
        let request;
        try {
            request = JSON.parse(line);
            const handler = handlers[request.op];
            if (!handler) throw new Error(`unknown op ${JSON.stringify(request.op)}`);
            write({ok: true, ...(await handler(request))});
        } catch (error) {
            write({ok: false, error: String(error?.message ?? error)});
        }
    }
    await context.dispose();
    await model.dispose();
}

main().catch((error) => {
    write({ok: false, fatal: true, error: String(error?.message ?? error)});
    process.exit(1);
});
