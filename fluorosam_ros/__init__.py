# The generated interface modules (msg, srv, action) and this source tree share the package
# name; extend_path lets Python find both halves. Keep this file free of imports: CMake copies
# it over the generated package's __init__.py.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
