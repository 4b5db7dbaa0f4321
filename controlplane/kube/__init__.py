"""Everything that speaks to a Kubernetes API, and the only room that writes to a cluster.

It holds the API client (`client`: the official `kubernetes_asyncio` client, configured from a
kubeconfig or in-cluster, with its errors mapped to `ApiError`), the official call for each kind
(`typed`), the kinds this project reads and writes (`kinds`), the
list/watch/resume/relist loop of one kind (`watch`), the leader's status writer (`status_writer`), Lease
election (`leader`), per-Gateway proxy provisioning (`provisioner`), the debounced sync that drives both
after each publish (`cluster_sync`), the CA shared by replicas through a Secret (`ca_secret`), and the
in-cluster composition of all of them with the control plane (`serve`).

Reading a cluster into ChangeSets stays in `controlplane.sources.kubernetes`, behind the one Source
interface; it uses `client`, `kinds` and `watch` from here.
"""
