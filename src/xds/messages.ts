/** The decoded shapes of the xDS messages readygate reads (snake_case, as the protos name them). */
import type { StructValue } from './node-metadata.js';

export interface RpcStatus {
  code?: number;
  message?: string;
}

export interface EnvoyNode {
  id?: string;
  /** google.protobuf.Struct; readygate reads its `readygate.io/…` keys (node-metadata.ts). */
  metadata?: StructValue;
  cluster?: string;
  /** Where the Envoy runs; `zone` selects zone-aware CLAs (zone-views.ts). */
  locality?: { region?: string; zone?: string; sub_zone?: string };
  user_agent_name?: string;
  user_agent_version?: string;
  /** What Envoy sends instead of user_agent_version (a oneof). */
  user_agent_build_version?: {
    version?: { major_number?: number; minor_number?: number; patch?: number };
  };
  client_features?: string[];
}

export interface DiscoveryRequest {
  version_info?: string | undefined;
  node?: EnvoyNode | undefined;
  resource_names: string[];
  type_url?: string | undefined;
  response_nonce?: string | undefined;
  error_detail?: RpcStatus | undefined;
}

export interface DeltaDiscoveryRequest {
  node?: EnvoyNode;
  type_url?: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: RpcStatus;
}

export const DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';
export const DELTA_DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
export const DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';
export const DELTA_DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DeltaDiscoveryResponse';
