// Validates docs/asyncapi.yaml: the AsyncAPI parser's diagnostics (any error fails),
// every message example (and every `examples` entry of a component schema) against its
// schema, and info.version against Cargo.toml. Run by tools/validate-asyncapi.sh, which
// installs the parser and passes its folder in ASYNCAPI_MODULES.
//
//   node tools/validate-asyncapi.mjs [docs/asyncapi.yaml]

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const file = resolve(process.argv[2] ?? join(root, 'docs', 'asyncapi.yaml'));
const modules = process.env.ASYNCAPI_MODULES;
if (!modules) {
  console.error('ASYNCAPI_MODULES is not set: run tools/validate-asyncapi.sh');
  process.exit(2);
}

// The parser from the cache folder, and the JSON Schema validator it depends on itself.
const fromCache = createRequire(join(modules, 'package.json'));
const parserMain = fromCache.resolve('@asyncapi/parser');
const { Parser, DiagnosticSeverity } = fromCache('@asyncapi/parser');
const fromParser = createRequire(parserMain);
const AjvModule = fromParser('ajv');
const Ajv = AjvModule.default ?? AjvModule;
const parserVersion = fromCache('@asyncapi/parser/package.json').version;

const SEVERITY = { 0: 'error', 1: 'warning', 2: 'info', 3: 'hint' };
let failures = 0;
const fail = (msg) => {
  failures += 1;
  console.log(`error    ${msg}`);
};

const text = readFileSync(file, 'utf8');
console.log(`@asyncapi/parser ${parserVersion}: ${file}`);
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: file });

for (const d of diagnostics) {
  const where = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : '-';
  const path = d.path?.length ? ` at ${d.path.join('.')}` : '';
  console.log(`${(SEVERITY[d.severity] ?? d.severity).padEnd(8)} ${where} ${d.code}: ${d.message}${path}`);
  if (d.severity === DiagnosticSeverity.Error) failures += 1;
}

if (!document) {
  fail('the document did not parse');
} else {
  // info.version follows the crate's version.
  const cargo = readFileSync(join(root, 'Cargo.toml'), 'utf8');
  const pkg = cargo.slice(cargo.indexOf('[package]'));
  const crateVersion = /^version\s*=\s*"([^"]+)"/m.exec(pkg)?.[1];
  const docVersion = document.info().version();
  if (crateVersion !== docVersion) {
    fail(`info.version ${docVersion} is not Cargo.toml's version ${crateVersion}`);
  }

  // The parser (3.x) does not check examples of an AsyncAPI 3 document: do it here.
  const ajv = new Ajv({ allErrors: true, strict: false });
  const check = (what, schema, value) => {
    let validate;
    try {
      validate = ajv.compile(schema);
    } catch (e) {
      return fail(`${what}: schema does not compile: ${e.message}`);
    }
    if (!validate(value)) {
      const errors = validate.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
      fail(`${what} does not match its schema: ${errors.join('; ')}`);
    }
  };

  let examples = 0;
  for (const message of document.allMessages()) {
    const id = message.id();
    const payload = message.payload();
    if (message.examples().length === 0) fail(`message ${id} has no example`);
    message.examples().forEach((example, i) => {
      const name = `message ${id} example ${example.name() ?? i}`;
      examples += 1;
      if (example.hasPayload()) {
        if (!payload) fail(`${name} has a payload but the message has no payload schema`);
        else check(`${name} payload`, payload.json(), example.payload());
      } else if (payload) {
        fail(`${name} has no payload`);
      }
      if (example.hasHeaders()) {
        const headers = message.headers();
        if (!headers) fail(`${name} has headers but the message has no headers schema`);
        else check(`${name} headers`, headers.json(), example.headers());
      }
    });
  }
  for (const schema of document.components().schemas()) {
    (schema.examples() ?? []).forEach((example, i) => {
      examples += 1;
      check(`schema ${schema.id()} example ${i}`, schema.json(), example);
    });
  }
  console.log(`checked ${examples} examples of ${document.allMessages().length} messages`);
}

if (failures > 0) {
  console.log(`asyncapi: ${failures} error(s)`);
  process.exit(1);
}
console.log('asyncapi: valid');
