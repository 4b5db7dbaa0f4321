#!/usr/bin/env bash
# End to end on a kind cluster: the control plane from this repo's Dockerfile, installed by its Helm
# chart; a Gateway it provisions an Envoy for; a real MCP server; three agents with certificates from
# the control plane's CA; the quickstart policies. Asserts allowed calls return the tool's result and
# denied ones a 403 (JSON-RPC error code 403, or HTTP 403), and that statuses were written.
#
# Usage: e2e/kind/run.sh            (KEEP_CLUSTER=1 keeps the cluster; CLUSTER=name picks it)
# Needs: docker (running), kind, kubectl, helm, and network access (images, Gateway API CRDs, PyPI).
# Where any of that is missing it prints why and exits 0 with "SKIPPED: ...".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
MANIFESTS="${HERE}/manifests"
CLUSTER="${CLUSTER:-agentic-e2e}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
IMAGE="${IMAGE:-agentic-cp:e2e}"
CP_NS="agentic-system"
NS="quickstart"
GATEWAY_API_CRDS="${GATEWAY_API_CRDS:-https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.5.1/standard-install.yaml}"
TRUST_DOMAIN="cluster.local"
URL="https://agent-gateway-envoy.${NS}.svc:10443/tools/mcp"

skip() {
  echo "SKIPPED: $*"
  exit 0
}

# --- preflight: say exactly why we cannot run, and do not fail ------------------------------------------
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "docker is installed but 'docker info' fails (is the daemon running and reachable?)"
for tool in kind kubectl helm; do
  command -v "${tool}" >/dev/null 2>&1 || skip "${tool} is not installed"
done

log() { printf '\n== %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  kubectl -n "${CP_NS}" logs deploy/agentic-cp --tail=80 >&2 || true
  exit 1
}

cleanup() {
  if [[ "${KEEP_CLUSTER}" == "1" ]]; then
    echo "cluster ${CLUSTER} kept (KEEP_CLUSTER=1); delete it with: kind delete cluster --name ${CLUSTER}"
  else
    kind delete cluster --name "${CLUSTER}" >/dev/null 2>&1 || true
  fi
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND every 2 s until it succeeds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${seconds}s waiting for ${what}"
    sleep 2
  done
}

# --- cluster and control plane ---------------------------------------------------------------------------
log "kind cluster ${CLUSTER}"
if ! kind get clusters 2>/dev/null | grep -qx "${CLUSTER}"; then
  kind create cluster --name "${CLUSTER}" --wait 120s
fi
trap cleanup EXIT
kubectl config use-context "kind-${CLUSTER}" >/dev/null

log "image ${IMAGE} from ${ROOT}/Dockerfile"
docker build -t "${IMAGE}" "${ROOT}"
kind load docker-image "${IMAGE}" --name "${CLUSTER}"

log "Gateway API CRDs"
kubectl apply --server-side -f "${GATEWAY_API_CRDS}"
kubectl wait --for=condition=Established --timeout=60s crd/gateways.gateway.networking.k8s.io \
  crd/httproutes.gateway.networking.k8s.io crd/gatewayclasses.gateway.networking.k8s.io

log "control plane (helm/agentic-cp)"
# One replica: each replica keeps its CA in its own state dir, and the agents' certificates below
# come from that CA.
# The provisioner's Roles go into the Gateway's namespace (provisioning.namespaces), so it must exist first.
kubectl create namespace "${NS}" --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install agentic-cp "${ROOT}/helm/agentic-cp" --namespace "${CP_NS}" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set replicas=1 \
  --set trustDomain="${TRUST_DOMAIN}" --set "provisioning.namespaces={${NS}}" --wait --timeout 5m
kubectl -n "${CP_NS}" rollout status deploy/agentic-cp --timeout=180s
CP_POD="$(kubectl -n "${CP_NS}" get pod -l app.kubernetes.io/name=agentic-cp -o jsonpath='{.items[0].metadata.name}')"
[[ -n "${CP_POD}" ]] || fail "no control-plane pod"

# --- workloads, gateway, policies -----------------------------------------------------------------------
log "namespace, MCP server, Gateway, route, policies"
kubectl apply -f "${MANIFESTS}/00-agents.yaml"
kubectl apply -f "${MANIFESTS}/20-mcp-server.yaml"
kubectl apply -f "${ROOT}/examples/quickstart/10-gateway.yaml"
kubectl apply -f "${ROOT}/examples/quickstart/30-policies.yaml"
kubectl -n "${NS}" rollout status deploy/everything --timeout=300s

log "agent identities from the control plane's CA"
secrets_dir="$(mktemp -d)"
for agent in research-agent math-agent intern-agent; do
  id="spiffe://${TRUST_DOMAIN}/ns/${NS}/sa/${agent}"
  kubectl -n "${CP_NS}" exec "${CP_POD}" -- agentic-cp identity issue --state-dir /var/run/agentic-cp \
    --spiffe-id "${id}" --out "/tmp/e2e-ids/${agent}"
  mkdir -p "${secrets_dir}/${agent}"
  for file in cert.pem key.pem bundle.pem; do
    kubectl -n "${CP_NS}" exec "${CP_POD}" -- cat "/tmp/e2e-ids/${agent}/${file}" >"${secrets_dir}/${agent}/${file}"
  done
  kubectl -n "${NS}" create secret generic "${agent}-identity" --from-file="${secrets_dir}/${agent}" \
    --dry-run=client -o yaml | kubectl apply -f -
done
rm -rf "${secrets_dir}"
kubectl apply -f "${MANIFESTS}/40-agents.yaml"
kubectl -n "${NS}" wait --for=condition=Ready pod -l app=agent --timeout=180s

log "provisioned proxy and statuses"
gateway_pod_exists() {
  [[ -n "$(kubectl -n "${NS}" get pod -l gateway.networking.k8s.io/gateway-name=agent-gateway -o name)" ]]
}
wait_for "the Envoy pod of Gateway agent-gateway" 180 gateway_pod_exists
kubectl -n "${NS}" wait --for=condition=Ready pod -l gateway.networking.k8s.io/gateway-name=agent-gateway \
  --timeout=300s || fail "the gateway proxy never became Ready"
kubectl -n "${NS}" wait --for=condition=Programmed gateway/agent-gateway --timeout=180s \
  || fail "Gateway agent-gateway is not Programmed"

# status_is KIND NAME JSONPATH EXPECTED
status_is() {
  [[ "$(kubectl -n "${NS}" get "$1" "$2" -o jsonpath="$3")" == "$4" ]]
}
accepted_ancestor='{.status.ancestors[0].conditions[?(@.type=="Accepted")].status}'
wait_for "XAccessPolicy quickstart-agents-only Accepted" 60 \
  status_is xaccesspolicy quickstart-agents-only "${accepted_ancestor}" True
wait_for "XAccessPolicy everything-tool-grants Accepted" 60 \
  status_is xaccesspolicy everything-tool-grants "${accepted_ancestor}" True
wait_for "HTTPRoute everything-route Accepted" 60 \
  status_is httproute everything-route '{.status.parents[0].conditions[?(@.type=="Accepted")].status}' True
wait_for "HTTPRoute everything-route ResolvedRefs" 60 \
  status_is httproute everything-route '{.status.parents[0].conditions[?(@.type=="ResolvedRefs")].status}' True
wait_for "listener mcp-https with one attached route" 60 \
  status_is gateway agent-gateway '{.status.listeners[0].attachedRoutes}' 1
address="$(kubectl -n "${NS}" get gateway agent-gateway -o jsonpath='{.status.addresses[0].value}')"
echo "Gateway agent-gateway: Programmed, address ${address:-<none>}"

# --- calls ----------------------------------------------------------------------------------------------
# call AGENT EXPECT TOOL ARGS_JSON: EXPECT is allow (the tool's text) or deny (403). Retries for 60 s,
# since configuration reaches Envoy asynchronously.
failures=0
call() {
  local agent=$1 expect=$2 tool=$3 args=$4 want=$5 out="" deadline=$((SECONDS + 60))
  while :; do
    out="$(kubectl -n "${NS}" exec "${agent}" -- /scripts/mcp-call.sh "${URL}" tools/call \
      "{\"name\":\"${tool}\",\"arguments\":${args}}" 2>&1 || true)"
    if [[ "${expect}" == allow ]] && grep -qF "${want}" <<<"${out}" && ! grep -q '"error"' <<<"${out}"; then
      break
    fi
    if [[ "${expect}" == deny ]] && { grep -q '^HTTP 403' <<<"${out}" || grep -Eq '"code": ?403' <<<"${out}"; } \
      && ! grep -qF "${want}" <<<"${out}"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      echo "FAIL  ${agent} tools/call ${tool}: expected ${expect}; last response:"
      echo "${out}" | sed 's/^/      /'
      failures=$((failures + 1))
      return 0
    fi
    sleep 2
  done
  echo "ok    ${agent} tools/call ${tool}: ${expect}"
}

log "MCP calls through the gateway (${URL})"
call research-agent allow get-sum '{"a":2,"b":3}' "The sum of 2 and 3 is 5."
call research-agent allow echo '{"message":"hello"}' "Echo: hello"
call math-agent allow get-sum '{"a":2,"b":3}' "The sum of 2 and 3 is 5."
call math-agent deny echo '{"message":"hello"}' "Echo: hello"
call intern-agent deny get-sum '{"a":2,"b":3}' "The sum of 2 and 3 is 5."
call intern-agent deny echo '{"message":"hello"}' "Echo: hello"

# Base protocol stays open for the intern: tools/list answers with the tool list.
list_out="$(kubectl -n "${NS}" exec intern-agent -- /scripts/mcp-call.sh "${URL}" tools/list '{}' 2>&1 || true)"
if grep -q '"get-sum"' <<<"${list_out}"; then
  echo "ok    intern-agent tools/list: allow"
else
  echo "FAIL  intern-agent tools/list: expected the tool list; got:"
  echo "${list_out}" | sed 's/^/      /'
  failures=$((failures + 1))
fi

if ((failures > 0)); then
  fail "${failures} call(s) did not behave as the policies say"
fi
echo
echo "PASSED: kind end-to-end (allowed calls returned results, denied calls got 403)"
