"""The development stack and the demo: what ``./dev`` starts on 127.0.0.1, and
the demo story it tells. Not in the image; the kernel, the services and the
operator's tools import nothing from here."""
