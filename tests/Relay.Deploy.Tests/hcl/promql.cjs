// Reads a JSON array of PromQL queries on stdin and prints, for each, what Prometheus's own grammar (Lezer) finds:
// {"names": [metric names of its selectors], "matchers": [{label, op, value}], "errors": ["at N: text"]}.
const { parser } = require("@prometheus-io/lezer-promql");

const unquote = (literal) => {
  const quote = literal[0];
  const body = literal.slice(1, -1);
  return quote === "`" ? body : body.replace(/\\(.)/g, "$1");
};

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((query) => {
    const names = [];
    const matchers = [];
    const errors = [];
    parser.parse(query).iterate({
      enter: (node) => {
        if (node.type.isError) {
          errors.push(`at ${node.from}: '${query.slice(Math.max(0, node.from - 20), node.to + 20)}'`);
        } else if (node.name === "Identifier" && node.node.parent && node.node.parent.name === "VectorSelector") {
          names.push(query.slice(node.from, node.to));
        } else if (node.name === "UnquotedLabelMatcher" || node.name === "QuotedLabelMatcher") {
          const label = node.node.getChild("LabelName") || node.node.getChild("QuotedLabelName");
          const op = node.node.getChild("MatchOp");
          const value = node.node.getChild("StringLiteral");
          if (label && op && value) {
            const text = query.slice(label.from, label.to);
            matchers.push({ label: text.startsWith('"') ? unquote(text) : text, op: query.slice(op.from, op.to), value: unquote(query.slice(value.from, value.to)) });
          }
        }
      },
    });
    return { names, matchers, errors };
  });
  process.stdout.write(JSON.stringify(results));
});
