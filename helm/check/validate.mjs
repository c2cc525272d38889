// Validates every object of a rendered chart (YAML on stdin) against Kubernetes' schemas
// (kubernetes-models; prometheus-operator's for ServiceMonitor). Prints one line per object;
// exits 1 on the first invalid or unknown one. (An ES module, as the models are: scripts/check-chart
// runs it from beside their node_modules.)
import { parseAllDocuments } from "yaml";

async function modelOf(apiVersion, kind) {
  if (apiVersion === "monitoring.coreos.com/v1") {
    return (await import(`@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`))[kind];
  }
  return (await import(`kubernetes-models/${apiVersion}/${kind}`))[kind];
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  let count = 0;
  for (const doc of parseAllDocuments(input)) {
    const object = doc.toJS();
    if (object === null) continue;
    const what = `${object.apiVersion} ${object.kind} ${object.metadata && object.metadata.name}`;
    let Model;
    try {
      Model = await modelOf(object.apiVersion, object.kind);
    } catch (error) {
      console.error(`unknown kind: ${what}: ${error.message}`);
      process.exit(1);
    }
    try {
      new Model(object).validate();
    } catch (error) {
      console.error(`invalid: ${what}: ${error.message}`);
      process.exit(1);
    }
    console.log(`valid: ${what}`);
    count++;
  }
  if (count === 0) {
    console.error("no objects");
    process.exit(1);
  }
});
