package manifests

// Service gives a set of pods one stable name and address.
type Service struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ServiceSpec   `json:"spec"`
	Status     ServiceStatus `json:"status,omitempty"`
}

// Service types.
const (
	ServiceClusterIP    = "ClusterIP"
	ServiceNodePort     = "NodePort"
	ServiceExternalName = "ExternalName"
	// ClusterIPNone makes a headless service.
	ClusterIPNone = "None"
)

// ServiceSpec is the desired state of a Service.
type ServiceSpec struct {
	Type                     string            `json:"type,omitempty"`
	Selector                 map[string]string `json:"selector,omitempty"`
	Ports                    []ServicePort     `json:"ports,omitempty"`
	ClusterIP                string            `json:"clusterIP,omitempty"`
	ClusterIPs               []string          `json:"clusterIPs,omitempty"`
	IPFamilies               []string          `json:"ipFamilies,omitempty"`
	IPFamilyPolicy           *string           `json:"ipFamilyPolicy,omitempty"`
	ExternalName             string            `json:"externalName,omitempty"`
	SessionAffinity          string            `json:"sessionAffinity,omitempty"`
	PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name       string      `json:"name,omitempty"`
	Protocol   string      `json:"protocol,omitempty"` // TCP or UDP
	Port       int32       `json:"port"`
	TargetPort IntOrString `json:"targetPort,omitempty"` // number or container port name
	NodePort   int32       `json:"nodePort,omitempty"`
}

// ServiceStatus is the observed state of a Service: what the control plane
// allocated and why it may not work.
type ServiceStatus struct {
	Conditions []Condition `json:"conditions,omitempty"`
}

// EndpointSlice lists the addresses behind a Service (discovery.k8s.io/v1).
// In Capstan an endpoint's address is its node's address and the host port
// its container port is published on, so it is reachable from every node
// without an overlay network; the pod's own IP is kept beside it.
type EndpointSlice struct {
	TypeMeta    `json:",inline"`
	ObjectMeta  `json:"metadata"`
	AddressType string         `json:"addressType"` // IPv4 or IPv6
	Endpoints   []Endpoint     `json:"endpoints"`
	Ports       []EndpointPort `json:"ports"`
}

// Endpoint is one pod behind a Service.
type Endpoint struct {
	Addresses  []string           `json:"addresses"`
	Conditions EndpointConditions `json:"conditions"`
	Hostname   *string            `json:"hostname,omitempty"`
	NodeName   *string            `json:"nodeName,omitempty"`
	TargetRef  *ObjectReference   `json:"targetRef,omitempty"`
	// PodIP is the pod's address on its node's container network.
	PodIP string `json:"podIP,omitempty"`
	// HostPorts maps a Service port name (or its number as text) to the
	// node port the pod's container port is published on.
	HostPorts map[string]int32 `json:"hostPorts,omitempty"`
}

// EndpointConditions say whether an endpoint takes traffic.
type EndpointConditions struct {
	Ready       *bool `json:"ready,omitempty"`
	Serving     *bool `json:"serving,omitempty"`
	Terminating *bool `json:"terminating,omitempty"`
}

// EndpointPort is one port of an EndpointSlice.
type EndpointPort struct {
	Name     *string `json:"name,omitempty"`
	Protocol *string `json:"protocol,omitempty"`
	Port     *int32  `json:"port,omitempty"`
}
