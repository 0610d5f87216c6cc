"""AWS:InstanceDetailedInformation: the CPU (model, speed, cores, sockets, hyper-threading)
and the OS service pack, one item; a source per platform."""
