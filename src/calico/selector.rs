//! Calico's label-selector language (filled in by the selector change).
