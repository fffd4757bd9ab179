"""The features layer: the Feast repository, training frames and online features.

Import the submodules (`store`, `training`, `online`): Feast takes seconds to import, so this
package does not import it eagerly.
"""

__all__: list[str] = []
