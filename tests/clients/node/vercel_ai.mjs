// The Vercel AI SDK run against a gateway as its users run it: the providers' default settings,
// only the base URL and the key changed. tests/clients/test_vercel_ai.py starts the gateway over
// the fake upstreams and runs, for each scenario,
//
//     node vercel_ai.mjs <gateway-url> <key> <provider>.<scenario> <model>
//
// provider: "responses" (`openai(model)`, the Responses API with OpenAI's default store: true),
// "chat" (`openai.chat(model)`, Chat Completions), "anthropic" (`anthropic(model)`, Messages),
// or "embed" (`openai.embedding(model)`). It prints one JSON object on stdout: what the user of
// the SDK sees (text, object, tool calls and results, usage) and, where the SDK exposes it, the
// request body it sent. A failed call prints {"error": ...} and exits 1.

import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import {
  embed, embedMany, generateObject, generateText, Output, stepCountIs, streamText, tool,
} from "ai";
import { z } from "zod";

const [url, apiKey, name, modelName] = process.argv.slice(2);
if (!modelName) {
  console.error("usage: node vercel_ai.mjs <gateway-url> <key> <provider>.<scenario> <model>");
  process.exit(2);
}
const [provider, scenario] = name.split(".");

// Every request the SDK sends, as it sends it: the fetch is the global one, only watched.
const sent = [];
async function watched(input, init) {
  const headers = new Headers(init?.headers);
  sent.push({
    path: new URL(input instanceof Request ? input.url : input).pathname,
    anthropicBeta: headers.get("anthropic-beta"),
    body: typeof init?.body === "string" ? JSON.parse(init.body) : null,
  });
  return fetch(input, init);
}
const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey, fetch: watched });
const anthropic = createAnthropic({ baseURL: `${url}/v1`, apiKey, fetch: watched });
const MODELS = {
  responses: () => openai(modelName),
  chat: () => openai.chat(modelName),
  anthropic: () => anthropic(modelName),
};

const weather = z.object({ city: z.string(), temperature_c: z.number().int() });
const tools = {
  get_weather: tool({
    description: "The current weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => ({ city, temperature_c: 18 }),
  }),
};

const usageOf = (usage) => ({
  inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, totalTokens: usage.totalTokens,
});

const stepsOf = (steps) => steps.map((step) => ({
  finishReason: step.finishReason,
  text: step.text,
  toolCalls: step.toolCalls.map((c) => ({ toolName: c.toolName, input: c.input })),
  toolResults: step.toolResults.map((r) => ({ toolName: r.toolName, output: r.output })),
}));

const SCENARIOS = {
  async generate(model) {
    const result = await generateText({ model, prompt: "Hi" });
    return {
      text: result.text, finishReason: result.finishReason, usage: usageOf(result.usage),
      responseModel: result.response.modelId,
    };
  },

  async stream(model) {
    const result = streamText({ model, prompt: "Hi" });
    const chunks = [];
    for await (const chunk of result.textStream) chunks.push(chunk);
    return {
      chunks, text: await result.text, finishReason: await result.finishReason,
      usage: usageOf(await result.usage), responseModel: (await result.response).modelId,
    };
  },

  // Two turns, the second sending the first answer back as the SDK keeps it: with the
  // Responses API's store: true, @ai-sdk/openai sends it as an item_reference to its item id.
  async conversation(model) {
    const system = "You answer in one short sentence.";
    const messages = [{ role: "user", content: "Name a colour of the French flag." }];
    const first = await generateText({ model, system, messages });
    messages.push(...first.response.messages, { role: "user", content: "And another one?" });
    const second = await generateText({ model, system, messages });
    return { texts: [first.text, second.text] };
  },

  async tools(model) {
    const result = await generateText({
      model, tools, stopWhen: stepCountIs(5), prompt: "What is the weather in Paris?",
    });
    return {
      text: result.text, finishReason: result.finishReason, steps: stepsOf(result.steps),
    };
  },

  async "stream-tools"(model) {
    const result = streamText({
      model, tools, stopWhen: stepCountIs(5), prompt: "What is the weather in Paris?",
    });
    const chunks = [];
    for await (const chunk of result.textStream) chunks.push(chunk);
    return { text: chunks.join(""), steps: stepsOf(await result.steps) };
  },

  async object(model) {
    const result = await generateObject({ model, schema: weather, prompt: "Weather in Paris?" });
    return { object: result.object };
  },

  async output(model) {
    const result = await generateText({
      model, output: Output.object({ schema: weather }), prompt: "Weather in Paris?",
    });
    return { output: result.output };
  },
};

async function embeddings() {
  const model = openai.embedding(modelName);
  const one = await embed({ model, value: "hello" });
  const many = await embedMany({ model, values: ["hello", "world"] });
  return {
    embedding: one.embedding, embeddings: many.embeddings,
    usage: [one.usage.tokens, many.usage.tokens],
  };
}

async function run() {
  if (provider === "embed") return embeddings();
  const model = MODELS[provider]?.();
  const body = SCENARIOS[scenario];
  if (!model || !body) throw new Error(`unknown scenario ${name}`);
  return body(model);
}

try {
  console.log(JSON.stringify({ ...(await run()), sent }));
} catch (error) {
  console.log(JSON.stringify({
    error: {
      name: error?.name, message: error?.message, statusCode: error?.statusCode,
      responseBody: error?.responseBody, cause: error?.cause?.message,
    },
    sent,
  }));
  process.exitCode = 1;
}
