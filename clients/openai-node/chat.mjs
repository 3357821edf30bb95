// The OpenAI Node SDK through the home gateway: `NODE_EXTRA_CA_CERTS=ca.crt node chat.mjs "prompt"`.
// OPENAI_BASE_URL and OPENAI_API_KEY come from the environment.
import OpenAI from "openai";

const client = new OpenAI();
const prompt = process.argv[2] ?? "Say hello";
const stream = await client.chat.completions.create({
  model: "qwen3-coder",
  messages: [{ role: "user", content: prompt }],
  stream: true,
  stream_options: { include_usage: true },
});
let usage = null;
for await (const chunk of stream) {
  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
  usage = chunk.usage ?? usage;
}
process.stdout.write("\n");
console.error(`usage: ${JSON.stringify(usage)}`);
