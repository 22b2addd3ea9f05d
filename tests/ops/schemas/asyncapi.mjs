// Parses an AsyncAPI document (path as the argument) with AsyncAPI's own parser and
// prints its diagnostics as one JSON array of {severity, code, message, path};
// severity 0 is an error. Exit 1 when the parser found an error.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], "utf8"));
const found = diagnostics.map((d) => ({
  severity: d.severity,
  code: d.code,
  message: d.message,
  path: d.path.join("."),
}));
console.log(JSON.stringify(found));
process.exit(document === undefined || found.some((d) => d.severity === 0) ? 1 : 0);
