import CExpat

/// Owns an expat parser made by `HardenedXMLParser`: it is the parser's user data, so the guards
/// installed there can stop the parser and record why. Only XMPPCore's parsers subclass it.
public class XMLParserOwner {
    /// `nil` before `HardenedXMLParser.make(for:)` and after `releaseParser()`.
    var parser: XML_Parser?
    /// The first reason to stop; set, the parser has been stopped.
    var failure: XMLFramerError?

    init() {}

    deinit {
        if let parser = self.parser { XML_ParserFree(parser) }
    }

    /// Records the first failure and stops the parser (after the current callback returns).
    final func fail(_ error: XMLFramerError) {
        if self.failure == nil { self.failure = error }
        if let parser = self.parser { XML_StopParser(parser, 0) }
    }

    /// Frees expat's state now.
    final func releaseParser() {
        if let parser = self.parser { XML_ParserFree(parser) }
        self.parser = nil
    }

    fileprivate static func owner(of userData: UnsafeMutableRawPointer?) -> XMLParserOwner {
        Unmanaged<XMLParserOwner>.fromOpaque(userData!).takeUnretainedValue()
    }
}

/// The only way XMPPCore makes (and resets) an expat parser, so that every stream, WebSocket
/// message, BOSH body and `XMLElement` tree is read with the same guards against hostile input:
///
/// - UTF-8 whatever the document declares (byte slices and splices assume it; RFC 6120 §11.6),
///   namespace processing, names reported as `uri local prefix` triplets (`XMLName`);
/// - no DTD at all (RFC 6120 §11.1): the DOCTYPE start stops the parser before an internal subset
///   can declare anything, and an entity declaration stops it too, should one ever be reached;
/// - no external entities or parameter entities are ever read (XXE), and a reference to one is
///   an error rather than silently skipped;
/// - billion-laughs limits far below expat's defaults (100× once 8 MiB are expanded): a second
///   line behind the DTD refusal;
/// - no comments or processing instructions (RFC 6120 §11.1);
/// - no reparse deferral (expat ≥ 2.6), which would let a complete stanza sit unreported.
///
/// The owner installs its own content handlers (elements, text, namespaces) afterwards.
enum HardenedXMLParser {
    /// Expansion through entities may not exceed this multiple of the input…
    static let maximumAmplification: Float = 10
    /// …once this many bytes have been produced (smaller documents are not checked).
    static let amplificationThreshold: UInt64 = 64 * 1024

    /// Gives `owner` a new hardened parser (in `owner.parser`, which must be empty).
    static func make(for owner: XMLParserOwner) {
        precondition(owner.parser == nil, "the owner already has a parser")
        // Fails only when malloc does, like any Swift allocation.
        guard let parser = XML_ParserCreateNS("UTF-8", 0x20) else { fatalError("expat could not allocate a parser") }
        owner.parser = parser
        Self.harden(parser, owner: owner)
    }

    /// Starts a new document on the owner's parser. `XML_ParserReset` clears the user data, every
    /// handler and every limit, so the guards are applied again; the owner reinstalls its handlers.
    @discardableResult
    static func reset(_ owner: XMLParserOwner) -> Bool {
        guard let parser = owner.parser, XML_ParserReset(parser, "UTF-8") != 0 else { return false }
        Self.harden(parser, owner: owner)
        return true
    }

    private static func harden(_ parser: XML_Parser, owner: XMLParserOwner) {
        XML_SetUserData(parser, Unmanaged.passUnretained(owner).toOpaque())
        XML_SetReturnNSTriplet(parser, 1)
        XML_SetParamEntityParsing(parser, XML_PARAM_ENTITY_PARSING_NEVER)
        // Returning 0 makes any external entity reference XML_ERROR_EXTERNAL_ENTITY_HANDLING.
        XML_SetExternalEntityRefHandler(parser) { _, _, _, _, _ in 0 }
        XML_SetBillionLaughsAttackProtectionMaximumAmplification(parser, Self.maximumAmplification)
        XML_SetBillionLaughsAttackProtectionActivationThreshold(parser, Self.amplificationThreshold)
        tether_disable_reparse_deferral(parser)
        XML_SetStartDoctypeDeclHandler(parser) { userData, _, _, _, _ in
            XMLParserOwner.owner(of: userData).fail(.forbiddenConstruct("DTD"))
        }
        XML_SetEntityDeclHandler(parser) { userData, _, _, _, _, _, _, _, _ in
            XMLParserOwner.owner(of: userData).fail(.forbiddenConstruct("entity declaration"))
        }
        XML_SetCommentHandler(parser) { userData, _ in
            XMLParserOwner.owner(of: userData).fail(.forbiddenConstruct("comment"))
        }
        XML_SetProcessingInstructionHandler(parser) { userData, _, _ in
            XMLParserOwner.owner(of: userData).fail(.forbiddenConstruct("processing instruction"))
        }
    }
}
