"""Workload identity for the mesh: SPIFFE IDs, a local CA, SVID files, rotation, SDS secrets, xDS mTLS.

Envoy authorizes callers by the URI SAN of their peer certificate (RBAC ``authenticated.principal_name``),
so every identity decision reduces to "which SPIFFE ID does this certificate carry, and which CA vouches
for it". The modules stay small and import nothing heavy at package import time:

- ``spiffe``    SPIFFE ID construction and validation
- ``ca``        the self-signed root kept under the state dir, and SVID issuance
- ``files``     atomic cert/key/bundle files for Envoy and test clients
- ``rotation``  cache of issued SVIDs and renewal at a fraction of their lifetime
- ``sds``       Envoy ``Secret`` messages for SDS
- ``xds_auth``  mTLS on the xDS channel itself and node-id conventions
"""
