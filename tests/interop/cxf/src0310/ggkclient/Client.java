package ggkclient;

import nl.egem.stuf.stuf0301.*;
import nl.stufstandaarden.sectormodel.ggk._0210.*;

/**
 * Client code as a partner writes it against the classes Apache CXF generates from the official
 * StUF-GGk 0310 WSDL (ggk-gateway tests: it must compile unchanged against the classes generated
 * from the gateway's own WSDL, ?wsdl=0310).
 */
public class Client {
    public static String send(OntvangAsynchroon port, byte[] payload) {
        nl.egem.stuf.stuf0301.ObjectFactory stuf = new nl.egem.stuf.stuf0301.ObjectFactory();
        nl.stufstandaarden.sectormodel.ggk._0210.ObjectFactory ggk =
            new nl.stufstandaarden.sectormodel.ggk._0210.ObjectFactory();
        EnvelopHeenberichtGgkDi01 di01 = ggk.createEnvelopHeenberichtGgkDi01();
        StuurgegevensDi01EnvelopHeenbericht sg = stuf.createStuurgegevensDi01EnvelopHeenbericht();
        sg.setBerichtcode(Berichtcode.DI_01);
        Systeem zender = stuf.createSysteemGgkberichten();
        zender.setOrganisatie("12345678");
        zender.setApplicatie("ZorgSuite");
        sg.setZender(zender);
        Systeem ontvanger = new SysteemGgkberichten();
        ontvanger.setOrganisatie("0150");
        ontvanger.setApplicatie("GGk");
        sg.setOntvanger(ontvanger);
        sg.setReferentienummer("3f2b8c1e-6a4d-4c9b-9e2f-1a7d5c3b8e01");
        sg.setTijdstipBericht("20261130120000000");
        sg.setFunctie("WMO305");
        di01.setStuurgegevens(sg);
        EnvelopHeenberichtGgkDi01.Parameters p = ggk.createEnvelopHeenberichtGgkDi01Parameters();
        p.setApplicatieVersie("0001");
        p.setApplicatieSubversie("0000");
        p.setFunctieVersie("0003");
        p.setFunctieSubversie("0002");
        BinaireInhoudBasisGgkberichten bericht = stuf.createBinaireInhoudBasisGgkberichten();
        bericht.setValue(payload);
        bericht.setContentType("text/xml");
        p.setBericht(bericht);
        di01.setParameters(p);
        try {
            Bv03Bericht bv03 = port.ggkDi01(di01);
            Bv03Bericht.Stuurgegevens answer = bv03.getStuurgegevens();
            return answer.getCrossRefnummer() + " " + answer.getBerichtcode().value();
        } catch (Fo03 fault) {
            Fo03Bericht fo03 = fault.getFaultInfo();
            Foutbericht body = fo03.getBody();
            Fo03Bericht.Stuurgegevens s = fo03.getStuurgegevens();
            Foutplek plek = body.getPlek();
            return body.getCode() + " " + plek.value() + " " + s.getCrossRefnummer();
        }
    }

    public static OntvangAsynchroon port() {
        return new StUFOntvangAsynchroonGGK0310Service().getOntvangAsynchroon();
    }

    public static String answerFo01(OntvangAsynchroon port) throws Fo03 {
        Fo01Bericht fo01 = new Fo01Bericht();
        Fo01Bericht.Stuurgegevens s = new Fo01Bericht.Stuurgegevens();
        s.setBerichtcode(Berichtcode.FO_01);
        fo01.setStuurgegevens(s);
        Foutbericht body = new Foutbericht();
        body.setDetailsXML(new FoutdetailsXML());
        fo01.setBody(body);
        return port.fo01(fo01).getStuurgegevens().getReferentienummer();
    }
}
