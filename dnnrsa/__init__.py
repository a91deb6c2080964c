"""dnnrsa: compare deep neural networks with human fMRI by representational similarity analysis.

Importing the package is light: torch, nipype and CuPy are imported only by the
modules that need them. Its modules, one line each (docs/architecture.md tells how they
depend on each other):

The core, public modules

``analysis``                 DNN-side analyses: MDS, category index, layer similarity, arm relevance
``atlas``                    anatomical labels of MNI coordinates, cluster tables of statistic maps
``backend``                  the array backend: numpy on the CPU, CuPy on an NVIDIA GPU
``bidsnames``                BIDS derivative names: labels, file names built and parsed, sidecars
``brainmask``                the brain mask of a set of fMRI runs and what it leaves out
``corpora``                  public emotion corpora (CREMA-D, RAVDESS) read by their file naming
``encoding``                 voxelwise encoding models: banded ridge over network parts, ceilings
``encodingmaps``             the encoding maps the BIDS App writes, from a GLM's rows, with sidecars
``faces``                    face detection and the face crop of each stimulus
``featurebudget``            layers too large for memory reduced by a seeded sparse projection
``features``                 layer activations of a registered model, with an on-disk cache
``findings``                 the study's five findings, each a checked statement, and their table
``glm``                      per-stimulus fMRI patterns (nilearn's first-level GLM)
``inference``                ROI inference: noise ceilings, bootstrap evaluation, weighted models
``lesions``                  arm lesions of a trained network: which arm decides
``modelbank``                model banks: model RDMs that share one condition order
``rdm``                      RDMs: computation, comparison, conversion, files
``roi``                      regions of interest: masks on the BOLD grid, their patterns and RDMs
``searchlight``              whole-brain searchlight RSA
``stats``                    group statistics: sign-flip tests, TFCE, clusters, layer winners
``stimuli``                  stimulus decoding and model inputs
``surface``                  the cortical surface: meshes, discs, TFCE, vertex masks, GIFTI maps
``train``                    training a registered model for one regime or several

The core, private modules

``_analysisinputs``          checks of the DNN-side analyses' inputs: RDM vectors, seeds, labels
``_categoryindex``           the category index of layer RDMs, with its label-permutation test
``_cpus``                    the CPUs the process may use, and ``n_jobs``
``_croptables``              crop tables: each stimulus's face crop as a TSV
``_crossval``                weighted models of RDMs: the fit, the folds, cross-validation
``_decode``                  reading stimulus files into frames; the gray face image
``_decodedclips``            stimuli decoded once on disk, read by every network's input recipe
``_encoding_solve``          the banded ridge solves behind the encoding models (himalaya)
``_evalengine``              the ROI inference's batched engine: many bootstrap samples at once
``_fastglm``                 GLM fits by matrix products, with nilearn's numbers (LSA, LSS; OLS, AR(1))
``_findingfiles``            the findings' inputs read from a run's files, and the findings table
``_findingtests``            the statistical tests behind the findings
``_groupimgs``               group tests from images to images
``_inferenceinputs``         the ROI inference's comparators and bootstrap modes, checks of its RDMs
``_io``                      atomic file writing; cache names from file contents
``_layersimilarity``         layer-by-layer similarity of RDMs, within and across networks
``_masks``                   reading a mask: its image and the voxels inside
``_maxt``                    the blocked max-T kernel of the sign-flip test
``_mds``                     multidimensional scaling of an RDM (classical, SMACOF)
``_meshtfce``                TFCE on a mesh's graph compiled with numba: one union-find per map
``_modeleval``               model evaluation by bootstrap (subjects, stimuli, both), noise ceiling
``_neighbourhoods``          searchlight neighbourhoods (voxels within a sphere)
``_predict``                 running a network on arrays: logits, accuracy
``_pvalues``                 adjusted p-values: FDR, Bonferroni, Holm
``_rdmkernels``              the comparators' kernels: ranks, row standardisation, Kendall's tau-a
``_registries``              the comparator and group map statistic tables every consumer reads
``_scores``                  Fisher z of correlations, z of t values
``_signflip``                the sign-flip permutation test: sign patterns, the test, its result
``_surfaceio``               GIFTI per-vertex data read and written: runs, maps
``_tfce``                    cluster labelling, TFCE and cluster measures of batches of maps
``_tfce_numba``              TFCE of whole-brain maps compiled with numba
``_varpart``                 variance partitioning of an RDM between the two arms' last layers
``_version``                 the version
``_weightedranks``           ranks and moments of RDM entries under bootstrap pair weights
``_winners``                 layers compared with each other: the winning layer at each voxel

Subpackages of the core

``models``                   the model registry (entry points ``dnnrsa.models``, families), checkpoints
``models.crosschannel``      the cross-channel CNN for audio-visual emotion recognition
``models.standard``          standard video, image and audio networks; their weights, never fetched
``models.recipes``           the input recipes of the standard networks (clips, frames, waveforms)
``models._framemean``        an image network run on every frame, its layers averaged over them
``demo``                     the demo data set: stimuli, training clips, simulated BOLD, truth
``demo.dataset``             writing the whole demo data set, step by step
``demo.design``              the demo study's design: actors, emotions, sentences, stimulus table
``demo.talking_faces``       procedural talking faces and an mp4 clip writer
``demo.voices``              source-filter voice synthesis
``demo.clips``               the demo clips: actors rendered and encoded, the features they carry
``demo.bold``                simulated BOLD: MNI grid, planted regions, time series
``demo.bids_writer``         the raw BIDS data set and the fMRIPrep-style derivatives
``demo.groundtruth``         the planted ground truth (``derivatives/groundtruth``)
``demo.scoring``             searchlight maps scored against the planted ground truth
``data``                     the HTML template of the reports (no code)
``reports``                  self-contained HTML reports of a derivatives folder
``reports.build``            which sections each of the two reports has, in which order
``reports.discovery``        finding what a derivatives folder holds
``reports.sections``         the model side's sections: what to show, how to caption it
``reports.brain_sections``   the brain side's sections: searchlight, group and winner maps
``reports.roi_sections``     the regions-of-interest section of the group report
``reports.encoding_sections``  encoding sections: group unique-variance maps, region bars (group, participant)
``reports.study_sections``   the study sections: the findings table, the networks compared
``reports.render``           HTML: escaping, tables, figures as data URIs, the page
``reports.figures``          figures: RDMs, MDS, DNN analyses, per-layer summaries
``reports.brain_figures``    brain figures: statistic maps, the winner-take-all map
``reports.roi_figures``      region figures: model performance with the noise ceiling

The interfaces (nipype), ``dnnrsa.interfaces``

``interfaces``               nipype interfaces: load, call one core function, save
``interfaces.bids``          writing BIDS derivatives into the output folder
``interfaces.dnn``           the DNN side: features, layer RDMs, model banks, analyses
``interfaces.encoding``      voxelwise encoding models of a network's features
``interfaces.glm``           per-condition fMRI patterns
``interfaces.roi``           the RDM of a region of interest
``interfaces.searchlight``   searchlight RSA
``interfaces.stats``         group statistics: sign-flip tests, clusters, layer winners

The BIDS App, ``dnnrsa.bids_app``

``bids_app``                 the BIDS App: command lines, run configuration, workflows
``bids_app.run``             ``dnnrsa bids_dir output_dir {participant,group}``
``bids_app.parser``          the command line's ``build_parser()``
``bids_app.config``          the run configuration (a frozen ``RunConfig``)
``bids_app.errors``          exit codes and the one error handler of every command
``bids_app.collect``         each participant's inputs, found with pybids and checked
``bids_app.preflight``       checks of a participant run's inputs before any computation
``bids_app.outputs``         the output folder: one analysis per folder, concurrent runs
``bids_app.resources``       the memory the heavy nodes declare to nipype
``bids_app.execution``       running workflows; the derivatives' top-level files
``bids_app.workflows``       the workflow factories, re-exported from the three rooms below
``bids_app.wf_dnn``          the data set's DNN workflow
``bids_app.wf_participant``  each participant's workflow and the participant level's
``bids_app.wf_group``        the group tests, winners, ROI evaluation and findings workflows
``bids_app._groups``         what the group level's discovery hands to its workflows
``bids_app.participant``     the participant level
``bids_app.group``           the group level
``bids_app.train_cli``       ``dnnrsa-train``
``bids_app.demo``            ``dnnrsa-demo``: the whole demo in one command
``bids_app.demo_data``       ``dnnrsa-demo-data``: the demo data set
"""

from ._version import __version__

__all__ = ["__version__"]
