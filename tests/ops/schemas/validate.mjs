// Validates Strimzi resources (JSON, one array on stdin) against Strimzi's schemas;
// prints one JSON array: per resource, its errors (empty when valid).
import { KafkaUser } from "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1/KafkaUser";

const models = { KafkaUser };
let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((resource) => {
  const Model = models[resource.kind];
  if (!Model) return [`no schema for kind ${resource.kind}`];
  try {
    new Model(resource).validate();
    return [];
  } catch (error) {
    return [String(error.message ?? error)];
  }
});
console.log(JSON.stringify(results));
