/**
 * The sample configuration, in oslo-config-generator's style: each section
 * with, for each option, its help wrapped at 70 columns as `# ` comments,
 * its type, bounds, choices and deprecated names, and then the option
 * commented out with its default. etc/novalet.conf.sample is exactly this
 * output (a test fails when it is stale).
 */

import { OPTION_DEFINITIONS, SECTION_ORDER, type OptionDefinition, type OptionType } from './option-definitions.js';

const WRAP_WIDTH = 70;

const HEADER = [
  'novalet.conf.sample: every option novalet reads, commented out with its default value. Generated from config/option-definitions.ts by renderSampleConfig() in config/sample-config.ts; do not edit by hand (`novalet config sample` prints it).',
  '',
  "novalet reads nova.conf: options it shares with nova keep nova's section, name, type, default and meaning, and sections and options it does not implement are ignored, so an existing nova.conf can be used as it is. Lines starting with # or ; are comments; there are no comments after a value. A line starting with a space or a tab continues the value above it. $name and ${section.name} refer to other options; $$ is a literal $.",
];

export function renderSampleConfig(): string {
  const out: string[] = [...HEADER.flatMap(wrapComment), ''];
  SECTION_ORDER.forEach((section, i) => {
    if (i > 0) out.push('', '');
    out.push(`[${section}]`);
    for (const def of OPTION_DEFINITIONS.filter((d) => d.section === section)) {
      out.push('', ...renderOption(def));
    }
  });
  return `${out.join('\n')}\n`;
}

function renderOption(def: OptionDefinition): string[] {
  const lines: string[] = [];
  // As nova's multi-line help: an opening '#', the help, then the type on its own line.
  for (const line of `\n${def.help}\n (${typeName(def.type)})`.split('\n')) lines.push(...wrapComment(line));
  const { min, max } = bounds(def.type);
  if (min !== undefined) lines.push(`# Minimum value: ${formatNumber(def.type, min)}`);
  if (max !== undefined) lines.push(`# Maximum value: ${formatNumber(def.type, max)}`);
  if (def.type.kind === 'choice') {
    lines.push('# Possible values:');
    for (const choice of def.type.choices) {
      const name = choice.value === '' ? "''" : choice.value;
      lines.push(...wrapComment(`${name} - ${choice.description ?? '<No description provided>'}`));
    }
  }
  if (def.deprecatedNames.length > 0) {
    lines.push('# Deprecated Variations:');
    for (const old of def.deprecatedNames) {
      lines.push(`# Deprecated group/name - [${old.section ?? def.section}]/${old.name}`);
    }
  }
  if (def.novaletOwn) lines.push("# This option is novalet's own.");
  const shown = formatDefault(def);
  lines.push(shown === '' ? `#${def.name} =` : `#${def.name} = ${shown}`);
  return lines;
}

function typeName(type: OptionType): string {
  switch (type.kind) {
    case 'string':
    case 'choice':
      return 'string value';
    case 'int':
      return 'integer value';
    case 'float':
      return 'floating point value';
    case 'bool':
      return 'boolean value';
    case 'list':
      return 'list value';
    case 'port':
      return 'port value';
  }
}

function bounds(type: OptionType): { min?: number; max?: number } {
  if (type.kind === 'int') return { ...(type.min !== undefined ? { min: type.min } : {}), ...(type.max !== undefined ? { max: type.max } : {}) };
  if (type.kind === 'port') return { min: type.min, max: type.max };
  if (type.kind === 'float' && type.min !== undefined) return { min: type.min };
  return {};
}

function formatNumber(type: OptionType, n: number): string {
  return type.kind === 'float' && Number.isInteger(n) ? n.toFixed(1) : String(n);
}

function formatDefault(def: OptionDefinition): string {
  if (def.sampleDefault !== undefined) return def.sampleDefault;
  const value = def.default;
  if (value === null || value === undefined) return '<None>';
  if (Array.isArray(value)) return value.join(',');
  if (typeof value === 'number') return formatNumber(def.type, value);
  return String(value);
}

/**
 * One help line as `# ` comment lines at most 70 columns wide (longer only
 * for a single long word), like Python's textwrap with '# ' indents: the
 * first line keeps its leading spaces, an empty line becomes '#'.
 */
function wrapComment(line: string): string[] {
  if (line.trim() === '') return ['#'];
  const indent = /^ */.exec(line)![0];
  const words = line.slice(indent.length).split(' ');
  const out: string[] = [];
  let current = `# ${indent}${words[0]}`;
  for (const word of words.slice(1)) {
    if (current.length + 1 + word.length <= WRAP_WIDTH) {
      current += ` ${word}`;
    } else {
      out.push(current);
      current = `# ${word}`;
    }
  }
  out.push(current);
  return out;
}
