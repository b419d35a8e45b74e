"""Fault suite: the whole agent under storage, API, disk, input and crash faults."""
